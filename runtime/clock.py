"""Injected time: the real clock for live calls, a virtual clock for replay and tests.

A clock gives `now()` (seconds, monotonic) and `sleep(seconds)`. The virtual clock
advances only when every waiting coroutine is asleep on it, so a recorded call
replays as fast as the CPU allows and gives the same timeline every run.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...

    async def sleep_until(self, deadline: float) -> None: ...


class RealClock:
    """Wall-clock time from the event loop's monotonic clock."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        await asyncio.sleep(max(0.0, deadline - time.monotonic()))


class VirtualClock:
    """Simulated time. `advance_to` / `run_for` move it; sleepers wake in order.

    Deadlines within `EPSILON` of now count as due, so that sums of 20 ms steps and
    products like `i * 0.02` (which differ in the last bit) meet at the same tick.
    """

    EPSILON = 1e-6

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        await self.sleep_until(self._now + max(0.0, seconds))

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self._now + self.EPSILON:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut

    def next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def advance_to(self, t: float) -> None:
        """Move time to `t`, waking every sleeper whose deadline has come."""
        self._now = max(self._now, t)
        while self._sleepers and self._sleepers[0][0] <= self._now + self.EPSILON:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)

    async def settle(self, rounds: int = 20) -> None:
        """Let ready coroutines run until nothing more happens at the current instant."""
        for _ in range(rounds):
            await asyncio.sleep(0)

    async def run_for(self, seconds: float) -> None:
        """Advance time by `seconds`, stepping through every deadline on the way."""
        end = self._now + seconds
        await self.settle()
        while True:
            nxt = self.next_deadline()
            if nxt is None or nxt > end:
                break
            self.advance_to(nxt)
            await self.settle()
        self.advance_to(end)
        await self.settle()
