"""Idle detection for connections that receive many small messages.

`asyncio.timeout` around every receive costs a timer handle and a context per media frame
(measured: about a tenth of a media-stream call's CPU). An `IdleTimer` instead keeps one
loop timer per timeout period and is touched with a plain time stamp per message.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any


class IdleTimer:
    """Calls `on_idle()` once when `touch()` has not been called for `timeout` seconds.

    `on_idle` may be a coroutine function (closing a connection, say): it then runs as a
    task, `fired` turns True at once, and `wait_idle_done()` waits for it.

    Once fired or cancelled the timer lets go of `on_idle`: a handler that refers to the
    timer (or to a call that holds it) then makes no reference cycle, and the call is freed
    by reference counting rather than at the next full collection."""

    def __init__(self, timeout: float,
                 on_idle: Callable[[], Awaitable[Any] | None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout
        self._on_idle: Callable[[], Awaitable[Any] | None] | None = on_idle
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(timeout, self._check)
        self.fired = False
        self._task: asyncio.Future[Any] | None = None

    def touch(self) -> None:
        """A message arrived."""
        self._last = self._loop.time()

    def set_timeout(self, timeout: float) -> None:
        """Change the allowed silence (counted from the last touch)."""
        self.timeout = timeout
        if self._on_idle is not None:  # (not once fired or cancelled)
            self._reschedule(self._loop.time() - self._last)

    def cancel(self) -> None:
        """Stop for good: `on_idle` will not be called, and is let go."""
        self._stop_timer()
        self._on_idle = None

    def _stop_timer(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    async def wait_idle_done(self) -> None:
        """Wait for an `on_idle` coroutine that has started (nothing to wait for otherwise)."""
        if self._task is not None:
            await self._task

    def _check(self) -> None:
        self._handle = None
        if self._on_idle is None:
            return
        idle = self._loop.time() - self._last
        if idle < self.timeout:
            self._reschedule(idle)
            return
        self.fired = True
        on_idle, self._on_idle = self._on_idle, None
        result = on_idle()
        if inspect.isawaitable(result):
            self._task = asyncio.ensure_future(result)

    def _reschedule(self, idle: float) -> None:
        self._stop_timer()
        self._handle = self._loop.call_later(max(self.timeout - idle, 0.0), self._check)
