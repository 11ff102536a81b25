"""Events per second through Root -> node -> node -> Sink on one core.

    .venv/bin/python benchmarks/session_events.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import time

from agent.events import SDKEvent, SDKSystemDtmfEvent
from agent.nodes import Node
from agent.session import AgentSession


class Forward(Node):
    async def process_event(self, event: SDKEvent) -> None:
        await self.send_event(event)


async def run(n: int) -> tuple[float, float]:
    session = AgentSession()
    a, b = Forward("a"), Forward("b")
    session.add_edge(a, b)
    done = asyncio.Event()
    count = 0

    async def output(event: SDKEvent) -> None:
        nonlocal count
        if event.type == "system.dtmf":
            count += 1
            if count == n:
                done.set()

    session.set_output(output)
    await session.start()
    events = [SDKSystemDtmfEvent(digit="1") for _ in range(n)]
    cpu0, t0 = time.process_time(), time.perf_counter()
    for i, ev in enumerate(events):
        await session.deliver(ev)
        if i % 256 == 255:
            await asyncio.sleep(0)  # let the nodes run, as a live call interleaves
    await done.wait()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    await session.close()
    return cpu, wall


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    cpu, wall = asyncio.run(run(n))
    print(f"events: {n}")
    print(f"events/s (wall): {n / wall:,.0f}")
    print(f"events/s (cpu):  {n / cpu:,.0f}")
    print(f"per-event overhead: {cpu / n * 1e6:.2f} us CPU (Root -> a -> b -> Sink)")
    t0 = time.perf_counter()
    for _ in range(100_000):
        SDKSystemDtmfEvent(digit="1")
    print(f"event construction alone: {(time.perf_counter() - t0) * 10:.2f} us")


if __name__ == "__main__":
    main()
