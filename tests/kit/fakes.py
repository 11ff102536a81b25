"""Stand-ins for the parts around a `Call` or an `AgentSession` in tests."""

from __future__ import annotations

import asyncio
from typing import Any

from agent.events import SDKEvent
from gateway.testing import _NoSTT

__all__ = ["Collector", "FakeSession", "NoStt"]

# A recogniser that hears nothing (a call whose turns need no words): the one the replay
# kit uses for recorded agents.
NoStt = _NoSTT


class FakeSession:
    """What a `Call` needs of a session (`deliver`, `set_output`, `close`): it records
    the events delivered in `got`, and `out` is the call's output, for a test to send
    agent events through."""

    def __init__(self) -> None:
        self.out: Any = None
        self.got: list[SDKEvent] = []

    async def deliver(self, event: SDKEvent) -> None:
        self.got.append(event)

    def set_output(self, fn: Any) -> None:
        self.out = fn

    async def close(self, reason: str = "") -> None:
        return None


class Collector:
    """Output sink for tests: records events and lets a test wait for one."""

    def __init__(self) -> None:
        self.events: list[SDKEvent] = []
        self._cond = asyncio.Condition()

    async def __call__(self, event: SDKEvent) -> None:
        async with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    async def wait_for(self, pred, timeout: float = 5.0) -> SDKEvent:
        async def find():
            async with self._cond:
                while True:
                    for e in self.events:
                        if pred(e):
                            return e
                    await self._cond.wait()

        return await asyncio.wait_for(find(), timeout)

    def types(self) -> list[str]:
        return [e.type for e in self.events]
