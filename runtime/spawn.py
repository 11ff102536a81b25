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

__all__ = ["Child", "spawn"]


class Child:
    """A running child: its stdout and stderr as stream readers, its exit as `wait()`."""

    def __init__(self, popen: subprocess.Popen[bytes], stdout: asyncio.StreamReader,
                 stderr: asyncio.StreamReader, exited: asyncio.Future[None],
                 pipes: list[asyncio.BaseTransport]) -> None:
        self._popen = popen
        self.stdout = stdout
        self.stderr = stderr
        self._exited = exited
        self._pipes = pipes

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode

    def kill(self) -> None:
        """Kill the child and close its pipes: output not read yet, and input not written
        yet, are dropped (a reader no longer reading would otherwise keep them open)."""
        with contextlib.suppress(ProcessLookupError):
            self._popen.kill()
        for pipe in self._pipes:
            pipe.close()

    async def wait(self) -> int:
        """The exit status (negative: the signal that ended it); reaps the child."""
        await asyncio.shield(self._exited)
        return self._popen.wait()  # reaped when it exited: returns at once


async def spawn(argv: list[str], stdin: bytes | None = None) -> Child:
    """Start `argv` with stdout and stderr piped to the loop, and stdin from /dev/null or,
    given `stdin`, a pipe that the loop writes those bytes to, then closes. (Text goes in
    by stdin, not on the command line: argv is limited, 128 KB an argument on Linux.)

    Raises OSError (FileNotFoundError, PermissionError) when it cannot start. Cancelled
    while it starts, it kills the child and closes every pipe.
    """
    loop = asyncio.get_running_loop()
    ours: list[_Fd] = []  # the parent's ends, until a transport takes them
    theirs: list[int] = []  # the child's ends: closed here once it has them
    try:
        out_r, out_w = _pipe(ours, theirs)
        err_r, err_w = _pipe(ours, theirs)
        if stdin is None:
            in_r: int = subprocess.DEVNULL
            in_w = None
        else:
            in_w, in_r = _pipe(ours, theirs, child_reads=True)
        popen = subprocess.Popen(argv, stdin=in_r, stdout=out_w, stderr=err_w)
    except BaseException:
        _close(ours, theirs)
        raise
    _close([], theirs)
    transports: list[asyncio.BaseTransport] = []
    try:
        pidfd = os.pidfd_open(popen.pid)
    except BaseException:
        popen.kill()
        popen.wait()
        _close(ours, [])
        raise
    exited: asyncio.Future[None] = loop.create_future()

    def on_exit() -> None:  # the child has exited: reap it now, whoever waits for it
        loop.remove_reader(pidfd)
        os.close(pidfd)
        popen.poll()
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, on_exit)
    try:
        stdout = await _reader(loop, _hand_over(out_r, ours), transports)
        stderr = await _reader(loop, _hand_over(err_r, ours), transports)
        if in_w is not None:
            assert stdin is not None
            # buffered: the loop writes as the child reads, then closes the pipe (end of
            # file); a child killed early breaks the pipe, and the rest is dropped
            writer, _ = await loop.connect_write_pipe(asyncio.BaseProtocol,
                                                      _hand_over(in_w, ours))
            transports.append(writer)
            writer.write(stdin)
            writer.close()
    except BaseException:
        popen.kill()
        for transport in transports:
            transport.close()
        _close(ours, [])
        raise
    return Child(popen, stdout, stderr, exited, transports)


class _Fd:
    """The parent's end of a pipe, as a loop's pipe transport takes it: asyncio's closes it
    with `close()`, uvloop's closes the descriptor itself. (A file object would be closed
    twice under uvloop, or not at all, and warn, when it is collected.)"""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


def _pipe(ours: list[_Fd], theirs: list[int], child_reads: bool = False) -> tuple[_Fd, int]:
    """A pipe: the parent's end (kept in `ours`) and the child's (in `theirs`). Both are
    close-on-exec; Popen gives the child its end as 0, 1 or 2."""
    r, w = os.pipe()
    mine, child = (_Fd(w), r) if child_reads else (_Fd(r), w)
    ours.append(mine)
    theirs.append(child)
    return mine, child


def _hand_over(fd: _Fd, ours: list[_Fd]) -> _Fd:
    """A transport is being made on `fd`: from now on it is the loop's to close (even when
    making it fails or is cancelled: the loop then closes the transport)."""
    ours.remove(fd)
    return fd


def _close(ours: list[_Fd], theirs: list[int]) -> None:
    for fd in ours:
        fd.close()
    ours.clear()
    for raw in theirs:
        os.close(raw)
    theirs.clear()


class _OutputProtocol(asyncio.StreamReaderProtocol):
    def eof_received(self) -> bool:
        super().eof_received()
        return False  # nothing to write back: close (uvloop keeps a pipe open on True)


async def _reader(loop: asyncio.AbstractEventLoop, pipe: _Fd,
                  transports: list[asyncio.BaseTransport]) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: _OutputProtocol(reader), pipe)
    transports.append(transport)
    return reader
