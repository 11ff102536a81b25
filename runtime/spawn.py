"""Child processes for the event loop, started without stopping it.

uvloop starts a child with libuv's `fork()`, and the event loop waits while the kernel
copies the gateway's page tables and the child reaches `exec`: 5 ms at 50 MB of resident
memory and 18 ms at 400 MB on one core (benchmarks/README.md, "Process start"), during
which every call on the loop waits too. Python's `subprocess` starts children with
`vfork()`: 0.3 ms at any size. So children start with `subprocess.Popen`, and the running
loop (uvloop or asyncio's own) only takes over their pipes and learns of their exit from
a pidfd. Linux only (pidfd: 5.3 and later), like the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from typing import IO

__all__ = ["Child", "spawn"]


class Child:
    """A running child: its stdout and stderr as stream readers, its exit as `wait()`."""

    def __init__(self, popen: subprocess.Popen[bytes], stdout: asyncio.StreamReader,
                 stderr: asyncio.StreamReader, exited: asyncio.Future[None]) -> None:
        self._popen = popen
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()

    async def wait(self) -> int:
        """The exit status (negative: the signal that ended it); reaps the child."""
        await asyncio.shield(self._exited)
        return self._popen.wait()  # reaped when it exited: returns at once


async def spawn(argv: list[str], stdin: bytes | None = None) -> Child:
    """Start `argv` with stdout and stderr piped to the loop, and stdin from /dev/null or,
    given `stdin`, a pipe that the loop writes those bytes to, then closes. (Text goes in
    by stdin, not on the command line: argv is limited, 128 KB an argument on Linux.)

    Raises OSError (FileNotFoundError, PermissionError) when it cannot start.
    """
    loop = asyncio.get_running_loop()
    popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        pidfd = os.pidfd_open(popen.pid)
    except BaseException:
        popen.kill()
        popen.wait()
        raise
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:  # the child has exited: reap it now, whoever waits for it
        loop.remove_reader(pidfd)
        os.close(pidfd)
        popen.poll()
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    assert popen.stdout is not None and popen.stderr is not None  # PIPE above
    try:
        stdout = await _reader(loop, popen.stdout)
        stderr = await _reader(loop, popen.stderr)
        if stdin is not None:
            assert popen.stdin is not None  # PIPE above
            # buffered: the loop writes as the child reads, then closes the pipe (end of
            # file); a child killed early breaks the pipe, and the rest is dropped
            writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, popen.stdin)
            writer.write(stdin)
            writer.close()
    except BaseException:
        popen.kill()
        raise
    return Child(popen, stdout, stderr, exited)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: IO[bytes]) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    return reader
