"""Read timeouts and a cap on half-open connections, for every TCP listener.

A client that connects and then sends its request slowly, or never finishes it (partial
headers, a `Content-Length` it never meets, a garbage AudioSocket header) would hold a
socket, a task and its buffers for as long as it liked; hundreds of them would use up
file descriptors. Here:

- `PendingGate` counts a listener's connections that have not yet sent one complete
  request (HTTP headers, a SIP message, AudioSocket's first frame) and refuses new ones
  beyond its cap: such a connection is closed at once, and calls already up are untouched.
- `GuardedHttpServer` puts that gate in front of aiohttp's server (`AppRunner.server`):
  each connection is counted until its first request's headers end (a blank line). The
  header timeout itself is aiohttp's keep-alive timeout, which is armed when a connection
  opens and closes it if no complete request has arrived by then; the gate logs that
  close (rationed, `LogRation`).
- `body_timeout_middleware` reads a request's body within a time limit (HTTP 408 and a
  close when it is not all there in time).
- `read_before(reader, deadline)` is a stream read that gives up at an absolute time, so
  a client sending a byte now and then cannot stretch the limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from gateway.logtext import LogRation, printable

__all__ = ["GuardedHttpServer", "PendingGate", "body_timeout_middleware", "peer_text",
           "read_before"]

log = logging.getLogger(__name__)


class PendingGate:
    """How many of a listener's connections have not yet sent a complete first request;
    `admit()` is False (refuse the connection) when `limit` of them are open already."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what  # "HTTP", "SIP over TCP", "AudioSocket": for the log line
        self.limit = limit
        self.pending = 0
        self.refused = 0
        self._ration = LogRation(log, f"refused {what} connections", burst=3)
        self.timeouts = LogRation(log, f"{what} connections closed for slowness")

    def admit(self, peer: Any = None) -> bool:
        if self.pending >= self.limit:
            self.refused += 1
            loop = asyncio.get_running_loop()
            self._ration.log(loop.time(), logging.WARNING,
                             "%s connection from %s refused: %d connections have not sent a "
                             "complete request yet (the limit)", self.what, peer_text(peer),
                             self.limit)
            return False
        self.pending += 1
        return True

    def done(self) -> None:
        """A counted connection sent its first complete request, or closed."""
        self.pending = max(0, self.pending - 1)


def peer_text(peer: Any) -> str:
    """A socket's peer address (`peername`) as `host:port`, for a log line."""
    if isinstance(peer, tuple | list) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return str(peer)


async def read_before(reader: asyncio.StreamReader, deadline: float | None,
                      n: int = 65536) -> bytes:
    """`reader.read(n)`, raising `TimeoutError` at `deadline` (the loop's time; None: no
    limit)."""
    if deadline is None:
        return await reader.read(n)
    left = deadline - asyncio.get_running_loop().time()
    if left <= 0:
        raise TimeoutError
    return await asyncio.wait_for(reader.read(n), left)


class _CountingProtocol(asyncio.Protocol):
    """Stands in front of one aiohttp `RequestHandler` until its first request's headers
    have arrived, then hands the transport to it and steps aside."""

    def __init__(self, handler: Any, gate: PendingGate) -> None:
        self.handler = handler
        self.gate = gate
        self.transport: asyncio.Transport | None = None
        self.admitted = False
        self.counted = False
        self._tail = b""
        self._received = 0  # bytes before the headers ended
        self._peer_done = False  # the peer half-closed (sent EOF)
        self._opened = 0.0  # the loop's time at connection_made

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._opened = asyncio.get_running_loop().time()
        if not self.gate.admit(transport.get_extra_info("peername")):
            transport.abort()  # type: ignore[attr-defined]
            return
        self.admitted = self.counted = True
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self.admitted:
            return
        self._received += len(data)
        complete = b"\r\n\r\n" in self._tail + data  # (a blank line across two reads)
        self._tail = data[-3:]
        if complete:
            self._release()
        self.handler.data_received(data)

    def _release(self) -> None:
        """Headers done: no longer pending, and the handler gets the transport's events
        directly from now on (nothing in between for the call's media)."""
        if self.counted:
            self.counted = False
            self.gate.done()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.set_protocol(self.handler)

    def eof_received(self) -> bool | None:
        if not self.admitted:
            return None
        self._peer_done = True
        return self.handler.eof_received()  # type: ignore[no-any-return]

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.gate.done()
            self._log_if_timed_out(exc)
        if self.admitted:
            self.handler.connection_lost(exc)

    def _log_if_timed_out(self, exc: Exception | None) -> None:
        """A line when aiohttp's header timer closed this connection (we closed it, at or
        after the timeout; not the peer, and not an early close of a bad request)."""
        timeout = float(getattr(self.handler, "keepalive_timeout", 0.0))
        now = asyncio.get_running_loop().time()
        if exc is not None or self._peer_done or now - self._opened < timeout:
            return
        peer = self.transport.get_extra_info("peername") if self.transport else None
        self.gate.timeouts.log(
            now, logging.INFO,
            "%s connection from %s: no complete request headers within %g s (%d bytes "
            "received); closing", self.gate.what, peer_text(peer),
            timeout, self._received)

    def pause_writing(self) -> None:
        if self.admitted:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.admitted:
            self.handler.resume_writing()


class GuardedHttpServer:
    """aiohttp's low-level `Server` (the protocol factory a site listens with) with a
    `PendingGate` in front: `runner._server = GuardedHttpServer(runner.server, gate)`
    before the site starts. Everything else is the wrapped server's."""

    def __init__(self, server: web.Server, gate: PendingGate) -> None:
        self._wrapped = server
        self.gate = gate

    def __call__(self) -> asyncio.Protocol:
        return _CountingProtocol(self._wrapped(), self.gate)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body_timeout_middleware(timeout: float) -> Any:
    """An aiohttp middleware: a request with a body must deliver all of it within
    `timeout` seconds of its headers, else HTTP 408 and the connection closes. The body
    is read here (bounded by the app's `client_max_size`) and kept, so handlers' `post()`,
    `json()` or `text()` find it already there."""

    @web.middleware
    async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.body_exists:
            try:
                await asyncio.wait_for(request.read(), timeout)
            except TimeoutError:
                log.warning("HTTP %s %s from %s: body not complete within %g s; closing",
                            request.method, printable(request.path, 80), request.remote,
                            timeout)
                response = web.Response(status=408, text="request body not received in time")
                response.force_close()  # (the rest of the body is not waited for)
                return response
        return await handler(request)

    return read_body_in_time
