"""The end of a SIGTERM drain: the process exits as soon as its last call has ended.

aiohttp's server shutdown (`AppRunner.cleanup`) first marks every connection as closing,
and a closing connection drops every byte that arrives from then on. A call that ended just
before (the caller's `stop` during the drain, say) is still in its handler's `ws.close()`,
waiting for the far end's close frame: that frame, arriving a millisecond later, was
dropped, and the close waited out aiohttp's 10 s receive timeout. The process exited 10 s
late (issue 24, item 7: 3 of 9 runs with `--drain-timeout 6`).

So the app counts its request handlers in flight (a WebSocket's handler lives as long as
the socket) and, once its calls have ended, lets them finish for up to `SETTLE_S` before
the server shuts down: a close handshake takes a round trip. A handler still running then
(a WebSocket that never started a call) is cancelled by the server's shutdown, which waits
at most `SHUTDOWN_S` for it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

SETTLE_S = 1.0  # for handlers to finish once every call has ended
SHUTDOWN_S = 1.0  # aiohttp's shutdown: for each handler left, and again once cancelled


class OpenRequests:
    """Request handlers in flight, and a way to wait for them to finish."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = asyncio.Event()

    @web.middleware
    async def middleware(self, request: web.Request,
                         handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
        self.count += 1
        try:
            return await handler(request)
        finally:
            self.count -= 1
            self._changed.set()

    async def settle(self, timeout: float = SETTLE_S) -> int:
        """Wait until no handler runs, for up to `timeout`; the number still running."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.count > 0:
            left = deadline - loop.time()
            if left <= 0:
                break
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                break
        if self.count:
            log.info("%d connection(s) still open at shutdown; closing them", self.count)
        return self.count
