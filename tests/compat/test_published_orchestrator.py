"""An orchestrator built from the published SDK's event models drives our `/ws`.

It builds its events with `smallestai.atoms.agent.events` and encodes them as the published
`EventCodec` does (binary JSON frames). What "parses" means for what we send back: every
message is a JSON object with a string `type`; when 4.4.0's registry knows the type,
`SDKEvent.parse_obj` (the published decoder) accepts it; the types it does not know are
exactly our additions to the catalog (`agent.audio`, `agent.log`, `system.dtmf`,
`system.audio.chunk`, `system.user.left`), which our own decoder accepts; a 4.4.0 client
drops them as unknown.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import numpy as np
import pytest

from agent.events import (
    SDKAgentAudioEvent,
    SDKAgentControlInterruptEvent,
    SDKAgentControlMuteUserEvent,
    SDKAgentControlUnmuteUserEvent,
    SDKAgentEndCallEvent,
    SDKAgentLogEvent,
    SDKAgentTransferConversationEvent,
    SDKEvent,
    decode_event,
)
from agent.nodes import OutputAgentNode
from agent.session import AgentSession
from gateway.demo import GREETING
from gateway.transports import webclient
from tests.compat.orchestrator import (
    PUBLISHED_TYPES,
    Orchestrator,
    Step,
    init_event,
    parse_published,
    pub,
    saw,
)
from tests.compat.servers import our_atoms_app

OUR_ADDITIONS = {"agent.audio", "agent.log", "system.dtmf", "system.audio.chunk",
                 "system.user.left"}


def check_parses(received: list[dict[str, Any]]) -> set[str]:
    """Every message parses as described above; returns the types 4.4.0 does not know."""
    unknown = set()
    for message in received:
        assert isinstance(message, dict) and isinstance(message.get("type"), str), message
        etype = message["type"]
        if etype in PUBLISHED_TYPES:
            event = parse_published(message)
            assert event.type == etype
        else:
            with pytest.raises(ValueError, match="Unknown type"):
                parse_published(message)
            assert decode_event(message).type == etype
            unknown.add(etype)
    assert unknown <= OUR_ADDITIONS
    return unknown


async def test_demo_agent_handshake_greeting_reply():
    from gateway.demo import setup

    async with our_atoms_app(setup) as url:
        client = Orchestrator(url)
        await client.connect()
        await client.run([
            Step(init_event({"customer": "Ada"}, "chat"), saw("agent.ready")),
            Step(pub.SDKSystemUserJoinedEvent(), saw("agent.speak")),
            Step(pub.SDKAgentTranscriptUpdateEvent(role="user", content="hello"),
                 saw("agent.transcript.update")),
            Step(pub.SDKSystemLLMRequestEvent(), saw("agent.llm.response.end")),
        ])
        await client.close()
    types = [m["type"] for m in client.received]
    assert types[0] == "agent.ready"
    assert [m["text"] for m in client.received if m["type"] == "agent.speak"] == [GREETING]
    reply = "".join(m["text"] for m in client.received
                    if m["type"] == "agent.llm.response.chunk")
    assert reply == "Hello! How can I help you today?"
    assert types.index("agent.llm.response.start") < types.index("agent.llm.response.end")
    assert set(client.frames) == {"binary"}  # as the published SDK sends them
    assert check_parses(client.received) == set()


class Everything(OutputAgentNode):
    """Emits every agent event of the catalog when asked to."""

    def __init__(self) -> None:
        super().__init__(name="everything")

    async def on_event(self, event: SDKEvent) -> None:
        if event.type == "system.user.joined":
            await self.speak("hi")
        elif event.type == "system.dtmf":
            pcm = np.zeros(160, dtype="<i2").tobytes()
            for out in (SDKAgentAudioEvent(pcm=pcm, sample_rate=8000),
                        SDKAgentLogEvent(name="note", payload={"digit": event.digit}),
                        SDKAgentControlMuteUserEvent(), SDKAgentControlUnmuteUserEvent(),
                        SDKAgentControlInterruptEvent(),
                        SDKAgentTransferConversationEvent(transfer_call_number="+15550100"),
                        SDKAgentEndCallEvent()):
                await self.send_event(out)

    async def generate_response(self):
        yield "one "
        raise RuntimeError("the model fell over")


async def everything_setup(session: AgentSession) -> None:
    session.add_node(Everything())
    await session.start()
    await session.wait_until_complete()


async def test_every_event_we_send_parses_with_the_published_models():
    async with our_atoms_app(everything_setup) as url:
        client = Orchestrator(url)
        await client.connect()
        await client.run([
            Step(init_event(), saw("agent.ready")),
            Step(pub.SDKSystemUserJoinedEvent(), saw("agent.speak")),
            Step(pub.SDKSystemLLMRequestEvent(), saw("agent.llm.response.end")),
            Step(json.dumps({"type": "system.dtmf", "digit": "5"}).encode(),
                 saw("agent.end_call")),
        ])
        await client.close()
    types = [m["type"] for m in client.received]
    for etype in ("agent.error", "agent.audio", "agent.log", "agent.control.mute_user",
                  "agent.control.unmute_user", "agent.control.interrupt",
                  "agent.transfer_call", "agent.end_call", "system.dtmf"):
        assert etype in types
    assert check_parses(client.received) == {"agent.audio", "agent.log", "system.dtmf"}
    error = parse_published(next(m for m in client.received if m["type"] == "agent.error"))
    assert "the model fell over" in error.message
    transfer = parse_published(next(m for m in client.received
                                    if m["type"] == "agent.transfer_call"))
    assert transfer.transfer_call_number == "+15550100"
    audio = next(m for m in client.received if m["type"] == "agent.audio")
    assert base64.b64decode(audio["pcm"]) == bytes(320)


async def refused(url: str, first: bytes | str | None) -> Orchestrator:
    client = Orchestrator(url)
    await client.connect()
    if first is not None:
        await client.send_raw(first)
    await asyncio.wait_for(client.closed.wait(), 5)
    return client


async def test_missing_init_is_refused(monkeypatch):
    monkeypatch.setattr(webclient, "FIRST_MESSAGE_TIMEOUT", 0.3)
    async with our_atoms_app(everything_setup) as url:
        client = await refused(url, None)
    assert [m["type"] for m in client.received] == ["agent.error"]
    error = parse_published(client.received[0])
    assert "no first message" in error.message
    assert client.close_code == 1001


BROKEN = [
    pytest.param(b'{"type": "system.init", "version": "1.0", ', id="truncated-json-binary"),
    pytest.param('{"type": "system.init", "version": ', id="truncated-json-text"),
    pytest.param(json.dumps({"type": "system.init", "version": "1.0", "session_context": {
        "initial_variables": {}, "conversation_type": "carrier-pigeon"}}).encode(),
        id="bad-conversation-type"),
    pytest.param(json.dumps({"type": "system.init", "session_context": "nope"}).encode(),
                 id="session-context-not-an-object"),
]


@pytest.mark.parametrize("first", BROKEN)
async def test_broken_init_is_refused(first):
    async with our_atoms_app(everything_setup) as url:
        client = await refused(url, first)
        # the server is still fine: a good handshake works on the next connection
        ok = Orchestrator(url)
        await ok.connect()
        await ok.run([Step(init_event(), saw("agent.ready"))])
        await ok.close()
    assert [m["type"] for m in client.received] == ["agent.error"]
    assert parse_published(client.received[0]).message
    assert client.close_code == 1003
