"""runtime.spawn leaves no pipe open, on asyncio's loop and on uvloop (the gateway's):
whether the child finishes, is killed while its output is not being read, or `spawn`
itself is cancelled half way (a barge-in cancels a synthesis as it starts). A pipe left
to the collector warns ("unclosed file <_io.BufferedWriter ...>") and holds a descriptor
until then; under uvloop a file object was also closed a second time."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import warnings
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from runtime.spawn import spawn

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def open_pipes() -> set[str]:
    """This process's open pipe ends, as descriptor and pipe."""
    pipes = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # (the listing's own descriptor)
            if (target := os.readlink(f"/proc/self/fd/{fd}")).startswith("pipe:"):
                pipes.add(f"{fd} {target}")
    return pipes


def run_leaving_nothing(scenario: Callable[[], Awaitable[None]], loop_kind: str) -> None:
    """Run `scenario` on a fresh loop; no descriptor it opened may stay open, and
    collecting what it left may not warn."""
    warm_up = LOOPS[loop_kind]()  # (libuv opens a pipe of its own once per process)
    warm_up.run_until_complete(asyncio.sleep(0))
    warm_up.close()
    before = open_pipes()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        loop = LOOPS[loop_kind]()
        try:
            loop.run_until_complete(scenario())
            loop.run_until_complete(asyncio.sleep(0.05))  # (transports close a turn later)
        finally:
            loop.close()
        left = open_pipes() - before  # (before the collector could close any)
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []
    assert left == set()


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_child_that_finishes(loop_kind: str) -> None:
    async def scenario() -> None:
        child = await spawn(["cat"], stdin=b"hello")
        assert await child.stdout.read() == b"hello"
        assert await child.stderr.read() == b""
        assert await child.wait() == 0

    run_leaving_nothing(scenario, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_a_child_killed_with_output_unread_and_input_unwritten(loop_kind: str) -> None:
    async def scenario() -> None:
        data = b"x" * (1 << 20)  # more than the pipes hold, both ways
        child = await spawn(["cat"], stdin=data)
        assert await child.stdout.readexactly(1000) == data[:1000]  # then stops reading
        await asyncio.sleep(0.05)
        child.kill()
        assert await child.wait() < 0

    run_leaving_nothing(scenario, loop_kind)


@pytest.mark.parametrize("loop_kind", LOOPS)
@pytest.mark.parametrize("turns", range(5))
def test_spawn_cancelled_as_it_starts(loop_kind: str, turns: int) -> None:
    async def scenario() -> None:
        task = asyncio.ensure_future(spawn(["cat"], stdin=b"hello"))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        try:
            child = await task
        except asyncio.CancelledError:
            await asyncio.sleep(0.1)  # the killed child is reaped by the loop
            return
        await child.stdout.read()
        await child.wait()

    run_leaving_nothing(scenario, loop_kind)
