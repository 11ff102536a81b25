"""pytest plugin (entry point `atoms_gateway` in `pytest11`): the `atoms_replay` fixture.

Installed with the package, so any project's tests can use it without a conftest:

    from myagent import setup

    def test_caller_can_cut_the_story_short(atoms_replay):
        call = atoms_replay([(0.5, "tell me a story"), (12.0, "stop, that's enough")],
                            app=setup)
        call.assert_interrupted(after_s=12.0)
        call.assert_heard("Once upon a time")
        call.assert_not_heard("never forgot that night")

    async def test_from_an_async_test(atoms_replay):
        call = await atoms_replay.run_async("recorded_call.wav", app=setup)
        call.assert_not_interrupted()

`atoms_replay(turns_or_audio, app=None, **options)` replays caller turns (a list of
`(seconds, "text")`, `(seconds, "file.wav")` or `gateway.replay_kit.CallerTurn`), a WAV
path or a 16 kHz int16 array through `app` (your `setup` handler; None: the built-in demo)
under a virtual clock, and returns a `gateway.replay_kit.ReplayCheck`. Options: `tts`
("espeak", default, or "piper") and `voice` speak the text turns; `duration` (seconds);
`agent_tts` (the agent's synthesiser; default: as `serve` picks it); everything else
`gateway.testing.replay_async` takes (`stt`, `settings`, `echo_db`, `agent_channel`, ...).

`pytest --atoms-replay-plots DIR` writes a picture of every replayed call to DIR (needs
matplotlib, the `[plot]` extra), named after the test.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("atoms-gateway")
    group.addoption("--atoms-replay-plots", default=None, metavar="DIR",
                    help="atoms_replay: write a PNG of every replayed call to DIR")


class AtomsReplay:
    """The `atoms_replay` fixture's value: call it (sync tests) or `await .run_async(...)`."""

    def __init__(self, test_name: str, plot_dir: str | None) -> None:
        self._name = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self._plot_dir = Path(plot_dir) if plot_dir else None
        self.calls: list[Any] = []  # every ReplayCheck made in this test

    def __call__(self, turns: Any, app: Any = None, **options: Any) -> Any:
        from gateway.replay_kit import replay_turns
        from gateway.testing import require_no_loop

        require_no_loop("atoms_replay", "atoms_replay.run_async")
        return self._done(replay_turns(turns, app, **options))

    async def run_async(self, turns: Any, app: Any = None, **options: Any) -> Any:
        from gateway.replay_kit import replay_turns_async

        return self._done(await replay_turns_async(turns, app, **options))

    def _done(self, check: Any) -> Any:
        self.calls.append(check)
        if self._plot_dir is not None:
            self._plot_dir.mkdir(parents=True, exist_ok=True)
            check.plot(self._plot_dir / f"{self._name}-{len(self.calls)}.png")
        return check


@pytest.fixture
def atoms_replay(request: pytest.FixtureRequest) -> AtomsReplay:
    """Replay caller turns or a recording through your agent; see `gateway.pytest_plugin`."""
    return AtomsReplay(request.node.name, request.config.getoption("--atoms-replay-plots"))
