"""The `atoms_replay` pytest fixture as a user meets it: a real pytest run (pytester, in a
subprocess, so the plugin comes from the installed entry point) of a small test file with
its own agent."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from tests.kit.speech import needs_espeak

pytest_plugins = ["pytester"]
pytestmark = needs_espeak

USER_TESTS = '''
from agent.nodes import OutputAgentNode
from media.stt.pocketsphinx import PocketSphinxSTT

LONG = ("Welcome to the bakery. Today we have fresh bread, croissants, and apple pie. "
        "We open at seven every morning and close at six in the evening.")
STT = PocketSphinxSTT(phrases=["hello", "what is open", "stop talking please"], pool_size=1)


class Bakery(OutputAgentNode):
    def __init__(self):
        super().__init__(name="bakery")

    async def on_event(self, event):
        if event.type == "system.user.joined":
            await self.speak(LONG)

    async def generate_response(self):
        yield "You said " + self.context.messages[-1]["content"] + "."


async def setup(session):
    session.add_node(Bakery())
    await session.start()
    await session.wait_until_complete()


def test_caller_talks_over_the_welcome(atoms_replay):
    call = atoms_replay([(2.0, "stop talking please")], app=setup, stt=STT)
    call.assert_interrupted(count=1, after_s=2.0, before_s=3.0)
    call.assert_heard("Welcome to the bakery")
    call.assert_not_heard("close at six")
    call.assert_said("You said stop talking please")


async def test_async_form(atoms_replay):
    call = await atoms_replay.run_async([(12.0, "hello")], app=setup, stt=STT, voice="en-gb")
    call.assert_not_interrupted()
    assert call.caller_said == ["hello"]
    call.assert_said("You said hello")


def test_sync_form_inside_a_loop_is_refused(atoms_replay):
    import asyncio

    async def inner():
        atoms_replay([(1.0, "hello")], app=setup)

    try:
        asyncio.run(inner())
    except RuntimeError as e:
        assert "atoms_replay.run_async" in str(e)
    else:
        raise AssertionError("no error")


def test_this_one_fails(atoms_replay):
    call = atoms_replay([(12.0, "hello")], app=setup, stt=STT)
    call.assert_interrupted()
'''


def test_the_plugin_is_an_installed_entry_point() -> None:
    names = {e.value for e in entry_points(group="pytest11")}
    assert "gateway.pytest_plugin" in names


def test_atoms_replay_fixture_in_a_user_test_file(pytester: pytest.Pytester, tmp_path) -> None:
    pytester.makepyfile(test_bakery=USER_TESTS)
    plots = tmp_path / "plots"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-o",
                                           "asyncio_mode=auto",
                                           "--atoms-replay-plots", str(plots), timeout=300)
    result.assert_outcomes(passed=3, failed=1)
    # a failed assertion shows the replayed call's timeline
    result.stdout.fnmatch_lines(["*expected an interrupt, got none*",
                                 "*--- the replayed call ---*", "*caller said: hello*"])
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert pngs == ["test_async_form-1.png", "test_caller_talks_over_the_welcome-1.png",
                    "test_this_one_fails-1.png"]
