"""Hostile clients over 127.0.0.1 sockets (issue 23): caller-chosen call ids never become
keys or file names, `end_call` always releases the call, and a well-behaved call alongside
keeps its audio."""

from __future__ import annotations

import asyncio
import base64
import gc
import logging
import re
import wave
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agent.events import SDKAgentAudioEvent
from agent.nodes.base import Node
from gateway.listening import CONVERSATION_MESSAGES
from tests.e2e.canary import (
    canary_call,
    canary_keeps_its_audio,
    health,
    no_tracebacks,
    until,
)
from tests.e2e.harness import HOST, Gateway, listed
from tests.kit.clients import CLIENTS, CallClient, TwilioClient, WebClient

TRY_AGAIN_LATER = 1013
UNSUPPORTED_DATA = 1003
SAFE_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(wav|json)$")
ID_PROVIDERS = ["twilio", "telnyx", "plivo", "exotel", "vonage"]  # the caller picks the id


async def open_call(gw: Gateway, provider: str, call_id: str | None = None) -> CallClient:
    client = CLIENTS[provider](HOST, gw.port, call_id=call_id)
    await client.connect()
    await client.start()
    client.start_mic()
    return client


async def end(gw: Gateway, client: CallClient) -> None:
    await client.hangup_and_wait()
    await client.close()


@pytest.mark.parametrize("provider", ID_PROVIDERS)
async def test_call_ids_cannot_escape_the_record_dir(gateway_factory, tmp_path, provider,
                                                     caplog):
    caplog.set_level(logging.INFO)
    folder = tmp_path / "rec"
    gw = await gateway_factory(record_dir=str(folder))
    hostile = ["../escaped", str(tmp_path / "absolute"), "..", "a/../../b", "x" * 5000]
    clients = [await open_call(gw, provider, call_id) for call_id in hostile]
    for client in clients:
        await client.wait_audio(0.1)
    for client in clients:
        await end(gw, client)
    await until(lambda: not gw.app.calls, 10, "every call to end")
    outside = sorted(str(p) for p in tmp_path.rglob("*") if p.parent != folder and p != folder)
    assert outside == [], f"recordings escaped {folder}: {outside}"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 * len(hostile)  # a WAV and a timeline per call, none shared
    assert all(SAFE_FILE.match(n) and len(n) <= 100 for n in names), names
    no_tracebacks(caplog)


async def test_nul_byte_in_a_call_id_does_not_leak_the_call(gateway_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory(record_dir=str(tmp_path), max_calls=1)
    client = await open_call(gw, "twilio", "CA\x00nul")
    await client.wait_audio(0.1)
    await end(gw, client)
    await until(lambda: not gw.app.calls, 5, "the call with a NUL in its id to end")
    assert (await health(gw))["active_calls"] == 0
    # its slot is free again: the next call is taken and hears the agent
    canary = await open_call(gw, "twilio")
    await canary.wait_audio(0.2)
    await end(gw, canary)
    await until(lambda: not gw.app.calls, 5, "the canary call to end")
    # two finished recordings (a call's timeline is .jsonl only while the call runs)
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".json", ".json", ".wav", ".wav"]
    no_tracebacks(caplog)  # (the NUL once raised ValueError out of end_call)


async def test_shutdown_drains_a_call_with_a_nul_byte_in_its_id(gateway_factory, tmp_path,
                                                                caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory(record_dir=str(tmp_path))
    client = await open_call(gw, "telnyx", "v3:\x00\x00")
    await client.wait_audio(0.1)
    await gw.app.stop(drain_timeout=0.2)  # the call is still up: it is hung up, then ended
    assert not gw.app.calls
    await asyncio.wait_for(client.closed.wait(), 5)
    assert len(list(tmp_path.glob("*.wav"))) == 1
    no_tracebacks(caplog)
    await client.close()


async def test_duplicate_call_ids_count_toward_max_calls(gateway_factory, tmp_path, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory(record_dir=str(tmp_path), max_calls=2)
    first = await open_call(gw, "twilio", "CAsame")
    second = await open_call(gw, "twilio", "CAsame")
    for client in (first, second):
        await client.wait_audio(0.2)
    assert (await health(gw))["active_calls"] == 2
    third = TwilioClient(HOST, gw.port, call_id="CAsame")
    await third.connect()
    await third.start()
    await asyncio.wait_for(third.closed.wait(), 5)
    assert third.close_code == TRY_AGAIN_LATER and "limit" in third.close_reason
    await third.close()
    # the two calls are kept apart: both still hear the agent
    loop = asyncio.get_running_loop()
    for client in (first, second):
        await client.wait_audio(0.2, after=loop.time())
    await end(gw, first)
    await until(lambda: len(gw.app.calls) == 1, 5, "the first call to end")
    assert listed(gw, "CAsame")  # the second one is still up
    assert (await health(gw))["active_calls"] == 1
    await end(gw, second)
    await until(lambda: not gw.app.calls, 5, "the second call to end")
    wavs = sorted(Path(tmp_path).glob("*.wav"))
    assert len(wavs) == 2 and all(p.name.startswith("CAsame-") for p in wavs), wavs
    starts = [r for r in caplog.records if "call started" in r.getMessage()]
    ends = [r for r in caplog.records if "call ended" in r.getMessage()]
    assert len(starts) == len(ends) == 2, [r.getMessage() for r in starts + ends]
    no_tracebacks(caplog)


# ------------------------------------------------------------------ injected agent audio


def tone(rate: int, seconds: float, hz: float = 440.0) -> bytes:
    t = np.arange(int(rate * seconds)) / rate
    return (8000 * np.sin(2 * np.pi * hz * t)).astype("<i2").tobytes()


def agent_audio(pcm: bytes, rate: Any) -> dict[str, Any]:
    return {"type": "agent.audio", "pcm": base64.b64encode(pcm).decode(), "sample_rate": rate}


async def test_agent_audio_at_an_absurd_rate_closes_only_that_web_call(gateway_factory, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory()
    canary = await canary_call(gw)
    for rate in (1, 7, 0, -16000, 7999, 96000, "fast"):
        client = WebClient(HOST, gw.port)
        await client.connect()
        await client.start()
        await client.send_json(agent_audio(b"\x01\x02" * 14, rate))
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.close_code == UNSUPPORTED_DATA, (rate, client.close_code)
        assert "sample_rate" in client.close_reason, (rate, client.close_reason)
        errors = [e for e in client.events if e.get("type") == "agent.error"]
        assert errors and "sample_rate" in errors[-1]["message"], (rate, client.events)
        await client.close()
    # odd-length PCM16 too
    client = WebClient(HOST, gw.port)
    await client.connect()
    await client.start()
    await client.send_json(agent_audio(b"\x01\x02\x03", 16000))
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.close_code == UNSUPPORTED_DATA and "even" in client.close_reason
    await client.close()
    # a usual rate still plays
    client = WebClient(HOST, gw.port)
    await client.connect()
    await client.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await client.send_json(agent_audio(tone(8000, 1.0), 8000))
    await client.wait_audio(0.5, after=t0)
    await end(gw, client)
    # the canary kept its audio (a rate of 1 once stalled the loop for 4 s), every
    # rejected call is gone, and each was one clean warning line
    await canary_keeps_its_audio(canary, 0.3)
    await until(lambda: len(gw.app.calls) == 1, 5, "the rejected calls to end")
    refused = [r.getMessage() for r in caplog.records
               if r.levelno == logging.WARNING and "closing this call" in r.getMessage()]
    assert sum("sample_rate" in m for m in refused) == 7, refused
    assert sum("even number of bytes" in m for m in refused) == 1, refused
    no_tracebacks(caplog)
    await end(gw, canary)


async def test_agent_audio_at_an_absurd_rate_from_a_node_is_dropped(gateway_factory, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")

    class Injector(Node):
        async def process_event(self, event: Any) -> None:
            if event.type == "system.user.joined":
                await self.send_event(SDKAgentAudioEvent(pcm=b"\x01\x02" * 14, sample_rate=1))
                await self.send_event(SDKAgentAudioEvent(pcm=tone(8000, 1.0), sample_rate=8000))

    async def setup(session: Any) -> None:
        session.add_node(Injector(name="injector"))
        await session.start()
        await session.wait_until_complete()

    gw = await gateway_factory(setup)
    client = await open_call(gw, "twilio")
    await client.wait_audio(0.6)  # the good chunk plays
    assert "agent audio dropped" in caplog.text and "got 1" in caplog.text
    await end(gw, client)


# ------------------------------------------------------------------ typed turns


async def test_typed_turns_do_not_resend_the_conversation(gateway_factory, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory(text_turns_per_s=1e6, text_turn_burst=1_000_000)
    canary = await canary_call(gw)
    client = WebClient(HOST, gw.port)
    await client.connect()
    await client.start()
    n = CONVERSATION_MESSAGES + 50
    for i in range(n):
        await client.send_json({"type": "text", "text": f"hello number {i}"})
    sid = client.call_id

    def requests() -> list[Any]:
        return [s.event for s in gw.rec.events.get(sid, []) if s.event.type == "system.llm.request"]

    await gw.rec.wait(lambda: len(requests()) >= n, 30, f"{n} llm requests")
    # the agent gets a bounded window of the conversation, the newest turn last
    sizes = [len(r.messages or []) for r in requests()]
    assert max(sizes) <= CONVERSATION_MESSAGES
    assert requests()[-1].messages[-1]["content"] == f"hello number {n - 1}"
    # the page is told a request happened, without the conversation
    await until(lambda: sum(e.get("type") == "system.llm.request" for e in client.events) >= n,
                10, "the page to see every request")
    shown = [e for e in client.events if e.get("type") == "system.llm.request"]
    assert all(not e.get("messages") for e in shown)
    await canary_keeps_its_audio(canary, 0.3, hang_up=True)
    no_tracebacks(caplog)
    await end(gw, client)


async def test_typed_turns_over_the_budget_are_refused(gateway_factory, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    gw = await gateway_factory()  # defaults: 10 at once, then 2 a second
    canary = await canary_call(gw)
    client = WebClient(HOST, gw.port)
    await client.connect()
    await client.start()
    sent = 60
    for i in range(sent):
        await client.send_json({"type": "text", "text": f"turn {i}"})

    def refused() -> int:
        return sum(e.get("type") == "agent.error" and "typed turn dropped" in e["message"]
                   for e in client.events)

    def taken() -> int:
        return sum(e.get("type") == "system.llm.request" for e in client.events)

    await until(lambda: refused() + taken() >= sent, 10, "every turn taken or refused")
    assert refused() >= sent // 2 and taken() >= 10
    assert "typed turn dropped" in caplog.text
    assert not client.closed.is_set()  # refused turns do not end the call
    await canary_keeps_its_audio(canary, 0.3)
    no_tracebacks(caplog)
    await end(gw, client)
    await end(gw, canary)


# ------------------------------------------------------------------ budgets of a call


async def silent_agent(session: Any) -> None:
    """An agent that says nothing of its own and plays the audio it is handed."""

    class Relay(Node):
        async def process_event(self, event: Any) -> None:
            if event.type == "agent.audio":
                await self.send_event(event)

    session.add_node(Relay(name="relay"))
    await session.start()
    await session.wait_until_complete()


def backlog_s(gw: Gateway, call_id: str) -> float:
    call = next(c for c in gw.app.calls.values() if c.call_id == call_id)
    return call.playout.queued_ms / 1000 + call.speaker.queued_samples / 16000


async def test_injected_agent_audio_is_capped(gateway_factory, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    # (not recorded: the harness's record of the session would keep the call alive)
    gw = await gateway_factory(silent_agent, max_agent_audio=3.0, record=False)
    canary = WebClient(HOST, gw.port)  # plays audio of its own, within the cap
    await canary.connect()
    await canary.start()
    client = WebClient(HOST, gw.port)
    await client.connect()
    await client.start()
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    second = tone(16000, 1.0)
    peak = 0.0
    for _ in range(30):  # 30 s of audio at once
        await client.send_json(agent_audio(second, 16000))
        await asyncio.sleep(0)
        peak = max(peak, backlog_s(gw, client.call_id))
    await until(lambda: "agent audio dropped" in caplog.text, 5, "the dropped audio's log line")
    peak = max(peak, backlog_s(gw, client.call_id))
    assert peak <= 3.0 + 1e-6, peak
    await client.wait_audio(0.5, after=t0)  # what was taken plays
    # the page is not sent its own audio back as JSON (it hears it as binary frames)
    echoed = [e for e in client.events if e.get("type") == "agent.audio"]
    assert echoed and all(not e.get("pcm") for e in echoed)
    t1 = loop.time()
    await canary.send_json(agent_audio(second, 16000))
    await canary.wait_audio(0.5, after=t1)
    call = weakref.ref(next(c for c in gw.app.calls.values() if c.call_id == client.call_id))
    await end(gw, client)
    await until(lambda: len(gw.app.calls) == 1, 5, "the call to end")
    for _ in range(3):  # its tasks finish a few loop rounds after the registry lets go
        await asyncio.sleep(0.05)
        gc.collect()
    assert call() is None, gc.get_referrers(call())  # what it held went with it
    no_tracebacks(caplog)
    await end(gw, canary)


async def test_max_call_duration_hangs_up_and_bounds_the_recording(gateway_factory, tmp_path,
                                                                   caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    gw = await gateway_factory(max_call_duration=1.0, record_dir=str(tmp_path))
    client = await open_call(gw, "twilio")
    await asyncio.wait_for(client.closed.wait(), 10)  # the gateway hung up
    assert "maximum call duration" in caplog.text
    await until(lambda: not gw.app.calls, 5, "the call to end")
    frames = sum(len(f.pcm) for f in client.agent_frames) / client.rate
    assert 0.3 < frames
    wav = next(tmp_path.glob("*.wav"))
    with wave.open(str(wav)) as w:
        assert w.getnframes() <= 16000 * 1.02  # (a frame that starts before the end)
    await client.close()
