"""runtime.spawn: children started with vfork, their pipes and exit on the running loop."""

from __future__ import annotations

import asyncio
import signal
import sys
import time

import pytest

from runtime.spawn import spawn


async def test_output_both_pipes_and_exit_status() -> None:
    child = await spawn([sys.executable, "-c", "import sys; sys.stdout.write('out' * 50000); "
                                               "sys.stderr.write('err'); sys.exit(3)"])
    out = await child.stdout.read()
    err = await child.stderr.read()
    assert out == b"out" * 50000  # more than a pipe buffer: read as it comes
    assert err == b"err"
    assert await child.wait() == 3
    assert child.returncode == 3


async def test_kill_ends_a_running_child_and_wait_reaps_it() -> None:
    child = await spawn(["sleep", "30"])
    assert child.returncode is None
    child.kill()
    assert await child.wait() == -signal.SIGKILL
    child.kill()  # already gone: no error


async def test_a_child_that_exits_unwaited_is_reaped() -> None:
    child = await spawn(["true"])
    for _ in range(200):  # the loop learns of the exit without anyone waiting
        if child.returncode is not None:
            break
        await asyncio.sleep(0.01)
    assert child.returncode == 0


async def test_missing_program_raises_oserror() -> None:
    with pytest.raises(FileNotFoundError):
        await spawn(["/nonexistent/espeak-ng", "hello"])


async def test_the_loop_keeps_running_while_children_run() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        child = await spawn([sys.executable, "-c", "import time; time.sleep(0.3)"])
        t0 = time.monotonic()
        await child.wait()
        assert time.monotonic() - t0 > 0.2
    finally:
        task.cancel()
    assert ticks > 20  # the wait did not block the loop


async def test_stdin_bytes_larger_than_an_argument_may_be() -> None:
    data = bytes(range(256)) * 2048  # 512 KB: argv would refuse 128 KB in one argument
    child = await spawn(["cat"], stdin=data)
    assert await child.stdout.read() == data  # written as the child reads, then closed
    assert await child.wait() == 0


async def test_a_child_killed_before_reading_its_stdin() -> None:
    child = await spawn(["sleep", "30"], stdin=b"x" * (1 << 20))  # more than the pipe holds
    child.kill()
    assert await child.wait() == -signal.SIGKILL
    await asyncio.sleep(0.05)  # the broken pipe ends the write quietly
