"""gateway.idle.IdleTimer lets go of its handler once cancelled or fired, so a handler
that refers back to the timer (through the call that holds it) makes no reference cycle:
the call is freed by reference counting, with the cyclic collector off (b7af367 was such
a cycle, kept until the 5-minute full collection)."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from gateway.idle import IdleTimer


class Call:
    """Holds its timer, whose handler refers to the call."""

    def __init__(self, timeout: float) -> None:
        self.ended = False
        self.idle = IdleTimer(timeout, self.on_idle)  # bound method: handler -> call

    def on_idle(self) -> None:
        self.ended = self.idle.timeout > 0  # (reads the timer, as the transports did)


@pytest.fixture
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def test_a_cancelled_timer_frees_its_call(collector_off):
    call = Call(timeout=30)
    freed = weakref.ref(call)
    call.idle.cancel()
    del call
    assert freed() is None


async def test_a_fired_timer_frees_its_call(collector_off):
    call = Call(timeout=0.01)
    while not call.idle.fired:
        await asyncio.sleep(0.01)
    assert call.ended
    freed = weakref.ref(call)
    del call
    assert freed() is None


async def test_after_cancel_a_new_timeout_does_not_bring_it_back():
    fired: list[bool] = []
    idle = IdleTimer(30, lambda: fired.append(True))
    idle.cancel()
    idle.set_timeout(0.01)
    await asyncio.sleep(0.1)
    assert not fired and not idle.fired


async def test_touches_keep_it_quiet_and_it_fires_once():
    fired: list[bool] = []
    idle = IdleTimer(0.2, lambda: fired.append(True))
    for _ in range(5):
        await asyncio.sleep(0.05)
        idle.touch()
    assert not fired
    while not idle.fired:
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    assert fired == [True]
