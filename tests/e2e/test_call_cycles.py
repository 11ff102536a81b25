"""An ended call is freed by reference counting alone (issue 23, the soak): `serve` runs a
full garbage collection only every 5 minutes (`gateway.gc_pacing`), so a call held in a
reference cycle (call -> transport -> call) kept its recogniser stream, barge-in detector
and playout until then: about 110 KB a `/ws` call, 1.5 GB after 12,000 calls at 75 a
second (benchmarks/soak.py). Real clients over 127.0.0.1, the collector off meanwhile."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest

from tests.e2e.canary import until
from tests.e2e.harness import HOST
from tests.kit.clients import CLIENTS


@pytest.mark.parametrize("provider", ["twilio", "web", "telnyx"])
async def test_an_ended_call_is_freed_without_the_garbage_collector(gateway_factory,
                                                                      provider):
    # (not recorded: the harness's record of the session would keep the call alive)
    gw = await gateway_factory(record=False)
    client = CLIENTS[provider](HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(0.1)
    call = weakref.ref(next(iter(gw.app.calls.values())))
    gc.collect()
    gc.disable()
    try:
        await client.hangup_and_wait()
        await client.close()
        await until(lambda: not gw.app.calls, 5, "the call to end")
        for _ in range(10):  # its tasks finish a few loop rounds after the registry lets go
            await asyncio.sleep(0.02)
        alive = call()
        assert alive is None, [type(r).__name__ for r in gc.get_referrers(alive)]
    finally:
        gc.enable()
