"""`agent.end_call` after speech that was queued back to back (issue 23, defect 6): the
call hangs up once the audio has played, on every provider whose far end confirms playback
with marks, and on `/ws`. Each client answers marks as its provider does: once the audio
sent before the mark has played in real time."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from agent.events import SDKAgentEndCallEvent, SDKAgentSpeakEvent
from agent.nodes.base import Node
from tests.e2e.harness import HOST
from tests.kit.clients import CLIENTS

FIRST = "This is the first sentence of the goodbye."
SECOND = "And this is the second one, right after it."
MARK_PROVIDERS = ["twilio", "telnyx", "plivo", "exotel", "vonage"]


async def two_sentences_then_end_call(session: Any) -> None:
    """Says two sentences back to back as soon as the caller joins, then hangs up."""

    class Farewell(Node):
        async def process_event(self, event: Any) -> None:
            if event.type == "system.user.joined":
                await self.send_event(SDKAgentSpeakEvent(text=FIRST))
                await self.send_event(SDKAgentSpeakEvent(text=SECOND))
                await self.send_event(SDKAgentEndCallEvent())

    session.add_node(Farewell(name="farewell"))
    await session.start()
    await session.wait_until_complete()


@pytest.mark.parametrize("provider", [*MARK_PROVIDERS, "web"])
async def test_end_call_after_two_sentences_hangs_up(gateway_factory, caplog, provider):
    caplog.set_level(logging.INFO, logger="gateway")
    gw = await gateway_factory(two_sentences_then_end_call)
    client = CLIENTS[provider](HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    call = await _call(gw)
    # generous: the two sentences take about 5 s; before the fix the call never ended
    await asyncio.wait_for(client.closed.wait(), 20)
    await client.close()
    await _until(lambda: call.closed, 5, "the call to end")
    types = [e["type"] for e in call.timeline]
    assert "call.hangup" in types
    assert [e for e in call.timeline if e["type"] == "call.end"][-1]["reason"] == "agent hung up"
    # both utterances were heard in full before the hang-up
    heard = [e["text"] for e in call.timeline if e["type"] == "agent.heard"]
    assert heard == [FIRST, SECOND]
    assert types.index("call.hangup") > max(i for i, t in enumerate(types)
                                            if t == "agent.heard")
    assert client.agent_frames and not client.problems
    assert "call ended (agent hung up)" in caplog.text
    if provider in MARK_PROVIDERS:
        # the far end's marks confirmed it all: no "assuming it played" timeout was needed
        assert "no far-end confirmation" not in caplog.text


async def _call(gw: Any) -> Any:
    await _until(lambda: gw.app.calls, 10, "the call")
    return next(iter(gw.app.calls.values()))


async def _until(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)
