"""Full garbage collections on a schedule, not whenever the oldest generation grows.

CPython runs a full (generation 2) collection once a quarter more objects have survived
into the oldest generation since the last one. A busy gateway moves every new call's
objects there, so with calls arriving steadily a full collection ran every few seconds,
and each one stops every call: 33 ms with 176 SIP calls, 49 ms with 400 (measured,
benchmarks/README.md), one or two 20 ms frames late for every call that was talking.

Ended calls leave no reference cycles (the agent graph is freed by reference counting,
tests/gateway/test_call_teardown.py), so what the oldest generation holds is live calls,
which a collection cannot free anyway. So `serve` switches automatic full collections
off; young collections run as before (short-lived cycles, such as an exception and its
traceback, are still freed within seconds), and one full collection every
`FULL_EVERY_S` frees whatever cycles lived longer.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

__all__ = ["FULL_EVERY_S", "collect_on_schedule"]

log = logging.getLogger(__name__)

FULL_EVERY_S = 300.0
_NEVER = 2**31 - 1  # young collections between automatic full ones: none


async def collect_on_schedule(every_s: float = FULL_EVERY_S) -> None:
    """Run until cancelled: automatic full collections off, one every `every_s` seconds
    instead; the thresholds are restored when it ends."""
    first, second, third = gc.get_threshold()
    gc.set_threshold(first, second, _NEVER)
    try:
        while True:
            await asyncio.sleep(every_s)
            t0 = time.perf_counter()
            found = gc.collect()
            log.info("full garbage collection: %d unreachable objects, %.1f ms", found,
                     (time.perf_counter() - t0) * 1000)
    finally:
        gc.set_threshold(first, second, third)
