"""`serve` runs full garbage collections on a schedule, never automatically."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from typing import Any

from gateway.gc_pacing import collect_on_schedule


async def test_full_collections_run_on_the_schedule_only_and_thresholds_come_back() -> None:
    before = gc.get_threshold()
    full: list[int] = []

    def seen(phase: str, info: dict[str, Any]) -> None:
        if phase == "stop" and info["generation"] == 2:
            full.append(info["collected"])

    gc.callbacks.append(seen)
    task = asyncio.create_task(collect_on_schedule(0.05))
    try:
        await asyncio.sleep(0)
        assert gc.get_threshold()[:2] == before[:2]  # young collections as before
        assert gc.get_threshold()[2] >= 2**31 - 1  # no automatic full collection
        async with asyncio.timeout(5):
            while not full:  # ... but one every 50 ms, on the schedule
                await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        gc.callbacks.remove(seen)
    assert gc.get_threshold() == before
