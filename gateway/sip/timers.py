"""Deadlines for sans-I/O protocol code: schedule callbacks at injected times.

Nothing here reads a clock or sleeps. The owner asks `next_deadline()`, and when
that time comes calls `run(now)`, which fires every due callback in deadline order
(callbacks may schedule more, which also fire if already due) and gathers what they
return.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["TimerHandle", "Timers"]

T = TypeVar("T")


class TimerHandle:
    __slots__ = ("when", "cancelled")

    def __init__(self, when: float) -> None:
        self.when = when
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerHandle, Callable[[float], list[T]]]] = []
        self._counter = itertools.count()

    def schedule(self, when: float, callback: Callable[[float], list[T]]) -> TimerHandle:
        handle = TimerHandle(when)
        heapq.heappush(self._heap, (when, next(self._counter), handle, callback))
        return handle

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].cancelled:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def run(self, now: float) -> list[T]:
        out: list[T] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, handle, callback = heapq.heappop(self._heap)
            if handle.cancelled:
                continue
            handle.cancelled = True  # fired
            out.extend(callback(handle.when))
        return out

    def __len__(self) -> int:
        return sum(1 for entry in self._heap if not entry[2].cancelled)
