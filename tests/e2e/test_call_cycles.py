"""An ended call is freed by reference counting alone (issue 23, the soak): `serve` runs a
full garbage collection only every 5 minutes (`gateway.gc_pacing`), so a call held in a
reference cycle (call -> transport -> call) kept its recogniser stream, barge-in detector
and playout until then: about 110 KB a `/ws` call, 1.5 GB after 12,000 calls at 75 a
second (benchmarks/soak.py). Real clients over 127.0.0.1, the collector off meanwhile."""

from __future__ import annotations

import asyncio
import gc
import json
import weakref

import pytest
import websockets

from agent.events import SDKSystemInitEvent, encode_event
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


def served_garbage() -> list[str]:
    """What a full collection finds unreachable of the gateway's own objects and of the
    aiohttp request each connection was served as (by type; the clients' are left out)."""
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        found = [f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.garbage]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    return sorted(name for name in found if name.startswith(("gateway.", "agent.", "aiohttp.")))


async def atoms_session(port: int) -> None:
    """An Atoms event-protocol peer of `/ws`: `system.init`, the agent's ready, a close."""
    async with websockets.connect(f"ws://{HOST}:{port}/ws", open_timeout=5) as ws:
        await ws.send(encode_event(SDKSystemInitEvent()).encode())
        async with asyncio.timeout(10):
            while json.loads(await ws.recv()).get("type") != "agent.ready":
                pass


@pytest.mark.parametrize("kind", ["twilio", "web", "telnyx", "atoms"])
async def test_an_ended_connection_leaves_no_cycle(gateway_factory, kind):
    """Nothing of a connection the gateway served waits for the collector: a `/ws` call's
    idle timer once held its own handler in a closure, and with it the WebSocket response,
    the request and its buffers (24-40 MB per 1,000 `/ws` calls in benchmarks/soak.py,
    freed only by the 5-minute full collection)."""
    gw = await gateway_factory(record=False)
    if kind == "atoms":
        await atoms_session(gw.port)  # (one first: imports and caches are not garbage)
    else:
        first = CLIENTS[kind](HOST, gw.port)
        await first.connect()
        await first.start()
        await first.wait_audio(0.1)
        await first.hangup_and_wait()
        await first.close()
    await until(lambda: not gw.app.calls and not gw.app.sessions, 5, "the first to end")
    gc.collect()
    gc.disable()
    try:
        if kind == "atoms":
            await atoms_session(gw.port)
        else:
            client = CLIENTS[kind](HOST, gw.port)
            await client.connect()
            await client.start()
            client.start_mic()
            await client.wait_audio(0.1)
            await client.hangup_and_wait()
            await client.close()
        await until(lambda: not gw.app.calls and not gw.app.sessions, 5, "it to end")
        for _ in range(10):  # its tasks finish a few loop rounds after the registry lets go
            await asyncio.sleep(0.02)
        assert served_garbage() == []
    finally:
        gc.enable()
