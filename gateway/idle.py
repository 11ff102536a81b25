"""Idle detection for connections that receive many small messages.

`asyncio.timeout` around every receive costs a timer handle and a context per media frame
(measured: about a tenth of a media-stream call's CPU). An `IdleTimer` instead keeps one
loop timer per timeout period and is touched with a plain time stamp per message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class IdleTimer:
    """Calls `on_idle()` once when `touch()` has not been called for `timeout` seconds."""

    def __init__(self, timeout: float, on_idle: Callable[[], None]) -> None:
        self._loop = asyncio.get_running_loop()
        self.timeout = timeout
        self._on_idle = on_idle
        self._last = self._loop.time()
        self._handle: asyncio.TimerHandle | None = self._loop.call_later(timeout, self._check)

    def touch(self) -> None:
        """A message arrived."""
        self._last = self._loop.time()

    def set_timeout(self, timeout: float) -> None:
        """Change the allowed silence (counted from the last touch)."""
        self.timeout = timeout
        self._reschedule(self._loop.time() - self._last)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        idle = self._loop.time() - self._last
        if idle >= self.timeout:
            self._on_idle()
        else:
            self._reschedule(idle)

    def _reschedule(self, idle: float) -> None:
        self.cancel()
        self._handle = self._loop.call_later(max(self.timeout - idle, 0.0), self._check)
