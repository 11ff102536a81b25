"""Hostile input over 127.0.0.1 sockets (issue 23, defects 8, 11, 12 and 14): Atoms event
sessions count toward the limits and time out; malformed input of every kind gets a clean
error (a close with a reason, an HTTP 4xx, a SIP 4xx) instead of a traceback; text from the
network is logged with its control characters escaped; callers are told the truth at
shutdown. A well-behaved call alongside (the canary) keeps its audio: its frames are
counted, never timed."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import re
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
import websockets

from agent.events import SDKAgentSpeakEvent, SDKSystemInitEvent, encode_event
from agent.nodes.base import Node
from gateway.logtext import LogRation
from tests.e2e.canary import (
    canary_call,
    canary_keeps_its_audio,
    health,
    no_tracebacks,
    rss_mb,
    until,
)
from tests.e2e.harness import HOST, Gateway
from tests.kit.clients import CLIENTS, TwilioClient, WebClient

GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
TRY_AGAIN_LATER = 1013
FRAME_S = 0.02
MARK_PROVIDERS = ["twilio", "telnyx", "plivo", "exotel", "vonage"]
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def deep(levels: int, inner: str = "1") -> str:
    """JSON arrays nested `levels` deep."""
    return "[" * levels + inner + "]" * levels


class AtomsPeer:
    """An Atoms event-protocol client of `/ws` (an orchestrator): JSON events in binary
    frames, `system.init` first."""

    def __init__(self, gw: Gateway) -> None:
        self.url = f"{gw.ws}/ws"
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self.ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, init: bool = True) -> None:
        self.ws = await websockets.connect(self.url, open_timeout=5, max_size=2**22)
        self._task = asyncio.create_task(self._receive())
        if init:
            await self.ws.send(encode_event(SDKSystemInitEvent()).encode())

    async def _receive(self) -> None:
        try:
            async for message in self.ws:
                self.received.append(json.loads(message))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = self.ws.close_code, self.ws.close_reason or ""
            self.closed.set()
            self._changed.set()

    async def send(self, message: str | bytes) -> None:
        await self.ws.send(message)

    async def wait_for(self, etype: str, timeout: float = 10.0) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for m in self.received:
                    if m.get("type") == etype:
                        return m
                if self.closed.is_set():
                    raise AssertionError(f"closed before {etype} ({self.close_code} "
                                         f"{self.close_reason}): {self.received}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def errors(self) -> list[str]:
        return [m.get("message", "") for m in self.received if m.get("type") == "agent.error"]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


# ------------------------------------------------------------------ defect 8: Atoms sessions


async def test_atoms_sessions_count_toward_max_calls_and_health(gateway_factory):
    gw = await gateway_factory(max_calls=2)
    canary = await canary_call(gw)
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")
    status = await health(gw)
    assert status["active_calls"] == 2 and status["event_sessions"] == 1, status
    # no room left: neither another Atoms session nor another call is taken
    extra = AtomsPeer(gw)
    await extra.connect()
    await asyncio.wait_for(extra.closed.wait(), 5)
    assert extra.close_code == TRY_AGAIN_LATER and "limit" in extra.close_reason
    assert any("limit" in e for e in extra.errors()), extra.received
    call = TwilioClient(HOST, gw.port)
    await call.connect()
    await call.start()
    await asyncio.wait_for(call.closed.wait(), 5)
    assert call.close_code == TRY_AGAIN_LATER and "limit" in call.close_reason
    await call.close()
    await extra.close()
    await canary_keeps_its_audio(canary)
    # the session's end frees its slot
    await peer.close()
    await until(lambda: not gw.app.sessions, 5, "the Atoms session to end")
    status = await health(gw)
    assert status["active_calls"] == 1 and status["event_sessions"] == 0, status
    again = AtomsPeer(gw)
    await again.connect()
    await again.wait_for("agent.ready")
    await again.close()
    await canary.hangup_and_wait()
    await canary.close()


async def test_an_idle_atoms_session_times_out(gateway_factory, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    gw = await gateway_factory(idle_timeout=0.6)
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")  # and then the peer says nothing
    await asyncio.wait_for(peer.closed.wait(), 10)
    assert peer.close_code == GOING_AWAY and "idle" in peer.close_reason
    assert any("idle timeout" in e for e in peer.errors()), peer.received
    await until(lambda: not gw.app.sessions, 5, "the idle session to leave the registry")
    assert (await health(gw))["active_calls"] == 0
    assert "no event from the peer" in caplog.text  # its end is one clean warning line
    no_tracebacks(caplog)
    await peer.close()


async def test_shutdown_tells_callers_the_gateway_is_going_away(gateway_factory):
    gw = await gateway_factory()
    twilio = await canary_call(gw)
    web = WebClient(HOST, gw.port)
    await web.connect()
    await web.start()
    await web.wait_audio(0.1)
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")
    await gw.app.stop(drain_timeout=0.2)  # all three are still up when the drain ends
    for client in (twilio, web):
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.close_code == GOING_AWAY, (client.provider, client.close_code)
        assert "shutting down" in client.close_reason, client.close_reason
        assert "agent" not in client.close_reason
    ends = [c.msg for c in web.controls if c.kind == "end"]
    assert ends and "shutting down" in ends[-1]["reason"], ends
    await asyncio.wait_for(peer.closed.wait(), 5)
    assert peer.close_code == GOING_AWAY and any("shutting down" in e for e in peer.errors())
    assert not gw.app.calls and not gw.app.sessions
    for client in (twilio, web):
        await client.close()
    await peer.close()


# ------------------------------------------------------------------ defect 11: SIP digest


class SipPeer(asyncio.DatagramProtocol):
    """A bare SIP client over UDP on 127.0.0.1: datagrams out, responses collected."""

    def __init__(self) -> None:
        self.responses: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.responses.put_nowait(data)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    async def request(self, data: bytes, to: tuple[str, int], timeout: float = 5.0) -> str:
        """Send `data`; its final response (not 100 Trying, nor a retransmission of an
        earlier request's response), as text."""
        assert self.transport is not None
        call_id = header(data.decode(), "Call-ID")
        self.transport.sendto(data, to)
        while True:
            text = (await asyncio.wait_for(self.responses.get(), timeout)).decode()
            if header(text, "Call-ID") == call_id and not text.startswith("SIP/2.0 1"):
                return text


def invite(peer_port: int, gw_port: int, n: int, authorization: str | None,
           body: bytes = b"", method: str = "INVITE", cseq: int = 1, to_tag: str = "",
           branch: str = "") -> bytes:
    lines = [
        f"{method} sip:agent@{HOST}:{gw_port} SIP/2.0",
        f"Via: SIP/2.0/UDP {HOST}:{peer_port};branch=z9hG4bK-hostile-{n}{branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:caller@{HOST}>;tag=hostile{n}",
        f"To: <sip:agent@{HOST}:{gw_port}>" + (f";tag={to_tag}" if to_tag else ""),
        f"Call-ID: hostile-{n}@{HOST}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:caller@{HOST}:{peer_port}>",
    ]
    if authorization is not None:
        lines.append(f"Authorization: {authorization}")
    if body:
        lines.append("Content-Type: application/sdp")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def header(response: str, name: str) -> str:
    for line in response.split("\r\n"):
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


async def test_non_ascii_digest_nonce_or_response_gets_a_401(gateway_factory, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory(sip_port=0, sip_user="agent", sip_password="s3cret")
    canary = await canary_call(gw)
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(SipPeer, local_addr=(HOST, 0))
    to = (HOST, gw.app.sip_port)
    try:
        first = await peer.request(invite(peer.port, to[1], 1, None), to)
        assert first.startswith("SIP/2.0 401"), first
        nonce = header(first, "WWW-Authenticate").split('nonce="')[1].split('"')[0]
        uri = f"sip:agent@{HOST}:{to[1]}"
        hostile = [
            ("ñ" * 8 + ".é", "0" * 32),  # a nonce that is not ASCII
            (nonce, "ü" * 32),  # a genuine nonce, a response that is not ASCII
            ("\u0661\u0662.\u0663", "\u0661" * 32),  # Arabic-Indic digits
        ]
        for n, (bad_nonce, response) in enumerate(hostile, 2):
            auth = (f'Digest username="agent", realm="atoms-gateway", nonce="{bad_nonce}", '
                    f'uri="{uri}", response="{response}", algorithm=MD5')
            answer = await peer.request(invite(peer.port, to[1], n, auth), to)
            assert answer.startswith("SIP/2.0 401"), answer
            assert "Digest" in header(answer, "WWW-Authenticate")
    finally:
        transport.close()
    await canary_keeps_its_audio(canary)
    await canary.hangup_and_wait()
    await canary.close()
    no_tracebacks(caplog)


# ------------------------------------------------------------------ defect 10: digest replay


def digest(nonce: str, uri: str, nc: int, password: str = "s3cret") -> str:
    """A client's RFC 2617 digest (qop=auth) for INVITE, computed here independently."""
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    count, cnonce = f"{nc:08x}", "c0ffee42"
    ha1 = md5(f"agent:atoms-gateway:{password}")
    response = md5(f"{ha1}:{nonce}:{count}:{cnonce}:auth:{md5(f'INVITE:{uri}')}")
    return (f'Digest username="agent", realm="atoms-gateway", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", algorithm=MD5, qop=auth, nc={count}, cnonce="{cnonce}"')


async def test_a_replayed_digest_header_starts_no_call(gateway_factory, caplog):
    """A captured `Authorization` header, sent again with a new Call-ID, from the same
    port or another, gets a 401 (403 once the source has failed too often) and starts no
    call; the same nonce with the next nc (an honest client reusing it) still works."""
    caplog.set_level(logging.INFO)
    gw = await gateway_factory(sip_port=0, sip_user="agent", sip_password="s3cret")
    canary = await canary_call(gw)
    loop = asyncio.get_running_loop()
    first_t, first = await loop.create_datagram_endpoint(SipPeer, local_addr=(HOST, 0))
    other_t, other = await loop.create_datagram_endpoint(SipPeer, local_addr=(HOST, 0))
    to = (HOST, gw.app.sip_port)
    uri = f"sip:agent@{HOST}:{to[1]}"
    try:
        challenge = await first.request(invite(first.port, to[1], 8001, None), to)
        assert challenge.startswith("SIP/2.0 401"), challenge
        nonce = header(challenge, "WWW-Authenticate").split('nonce="')[1].split('"')[0]
        captured = digest(nonce, uri, 1)
        ok = await first.request(invite(first.port, to[1], 8002, captured), to)
        assert ok.startswith("SIP/2.0 200"), ok
        await until(lambda: len(gw.app.calls) == 2, 10, "the genuine call to start")
        replays = [(first, 8003), (other, 8004), (other, 8005)]  # new Call-IDs, two ports
        for peer, n in replays:
            answer = await peer.request(invite(peer.port, to[1], n, captured), to)
            assert answer.split(" ")[1] in ("401", "403"), answer
        repeat_nc = await other.request(invite(other.port, to[1], 8006, captured), to)
        assert repeat_nc.split(" ")[1] in ("401", "403"), repeat_nc
        # an honest client counting on: nc 2 under the same nonce (from a clean source)
        third_t, third = await loop.create_datagram_endpoint(SipPeer, local_addr=("127.0.0.2", 0))
        try:
            again = invite(third.port, to[1], 8007, digest(nonce, uri, 2)).replace(
                f"{HOST}:{third.port}".encode(), f"127.0.0.2:{third.port}".encode())
            honest = await third.request(again, to)
            assert honest.startswith("SIP/2.0 200"), honest
            # and a lower count than the highest seen is a replay too
            lower = invite(third.port, to[1], 8008, digest(nonce, uri, 1)).replace(
                f"{HOST}:{third.port}".encode(), f"127.0.0.2:{third.port}".encode())
            refused = await third.request(lower, to)
            assert refused.startswith("SIP/2.0 401"), refused
        finally:
            third_t.close()
        await until(lambda: len(gw.app.calls) == 3, 10, "the honest call to start")
        await asyncio.sleep(0.2)
        assert len(gw.app.calls) == 3  # canary, the genuine call, the honest one: no replay
    finally:
        first_t.close()
        other_t.close()
    await canary_keeps_its_audio(canary)
    await canary.hangup_and_wait()
    await canary.close()
    no_tracebacks(caplog)


# ------------------------------------------------------------------ defect 11: deep JSON


async def test_deeply_nested_json_gets_clean_errors(gateway_factory, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory()
    canary = await canary_call(gw)
    # a web client: its call closes with a reason
    for payload in (deep(100_000),
                    '{"type": "agent.speak", "text": "x", "extra": ' + deep(5_000) + "}",
                    '{"type": "text", "text": "x", "more": ' + deep(65) + "}"):
        web = WebClient(HOST, gw.port)
        await web.connect()
        await web.start()
        await web.ws.send(payload)
        await asyncio.wait_for(web.closed.wait(), 5)
        assert web.close_code == UNSUPPORTED_DATA and "nested" in web.close_reason, (
            web.close_code, web.close_reason)
        await web.close()
    # the same as a first message
    raw = await websockets.connect(f"{gw.ws}/ws", open_timeout=5)
    await raw.send(deep(100_000))
    with pytest.raises(websockets.ConnectionClosed):
        while True:
            await asyncio.wait_for(raw.recv(), 5)
    assert raw.close_code == UNSUPPORTED_DATA and "nested" in (raw.close_reason or "")
    # an Atoms peer: a warning, and the session goes on
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")
    await peer.send(('{"type": "system.user.joined", "x": ' + deep(100_000) + "}").encode())
    await peer.send(deep(2_000).encode())
    await until(lambda: len(peer.errors()) >= 2, 5, "two warnings")
    assert all("nested" in e for e in peer.errors()), peer.errors()
    await peer.send(json.dumps({"type": "system.user.joined"}).encode())
    await peer.wait_for("agent.speak")  # the demo agent greets: the session is alive
    assert not peer.closed.is_set()
    await peer.close()
    # a provider stream: deep custom parameters close that call only
    twilio = TwilioClient(HOST, gw.port)
    await twilio.connect()
    await twilio.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
    start = ('{"event": "start", "sequenceNumber": "1", "streamSid": "MZ1", "start": '
             '{"streamSid": "MZ1", "callSid": "CAdeep", "customParameters": {"a": '
             + deep(1_000) + "}}}")
    await twilio.ws.send(start)
    await asyncio.wait_for(twilio.closed.wait(), 5)
    assert twilio.close_code == UNSUPPORTED_DATA and "nested" in twilio.close_reason
    await twilio.close()
    # WebRTC's offer: HTTP 400
    async with aiohttp.ClientSession() as http:
        for body in (deep(100_000),
                     '{"type": "offer", "sdp": "v=0", "context": ' + deep(900) + "}"):
            async with http.post(f"{gw.http}/webrtc/offer", data=body) as resp:
                assert resp.status == 400, (resp.status, await resp.text())
                assert "nested" in await resp.text()
    await canary_keeps_its_audio(canary)
    no_tracebacks(caplog)
    await canary.hangup_and_wait()
    await canary.close()


# ------------------------------------------------------------------ defect 11: marks


@pytest.mark.parametrize("provider", MARK_PROVIDERS)
async def test_hostile_mark_names_are_ignored(gateway_factory, caplog, provider):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory()
    client = CLIENTS[provider](HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(0.1)  # the greeting (utterance 1) is playing
    uid = f"{client.call_id}-u1"
    for ms in ("inf", "-inf", "nan", "1e999", "-5", "9" * 400, "0x10", " 7", "", "\u0661"):
        await client.mark_played(f"{uid}@{ms}")
    for name in ("@inf", "inf", "", "@", "u1@@inf", "\x00@1", "x" * 10_000 + "@1"):
        await client.mark_played(name)
    # the call goes on: more of the greeting arrives, and its own marks still confirm it
    await client.wait_audio(0.4, after=client.loop.time())
    assert not client.closed.is_set() and not client.problems, client.problems
    no_tracebacks(caplog)
    await client.hangup_and_wait()
    await client.close()


# ------------------------------------------------------------------ defect 11: /twilio/voice


async def test_control_characters_in_twilio_webhook_parameters(gateway_factory, caplog):
    caplog.set_level(logging.INFO)
    gw = await gateway_factory()
    forms = [
        {"CallSid": "CA\x00\x01", "From": "+1555\x1b[31m0100", "To": "+1555\x08\x7f0199"},
        {"CallSid": "CA\ud800x", "From": "\ufffe\uffff", "Direction": "inbound\x0c"},
    ]
    async with aiohttp.ClientSession() as http:
        for form in forms:
            body = urlencode(form, encoding="utf-8", errors="surrogatepass")
            async with http.post(f"{gw.http}/twilio/voice", data=body.encode(),
                                 headers=FORM) as resp:
                text = await resp.text()
                assert resp.status == 200, (resp.status, text)
            root = ET.fromstring(text.split("?>", 1)[1])  # well-formed XML
            params = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
            assert set(params) == set(form), params
            assert all(c.isprintable() for v in params.values() for c in v), params
        # a body that is not UTF-8 at all
        async with http.post(f"{gw.http}/twilio/voice", data=b"From=%FF%FE%00&CallSid=CA1",
                             headers=FORM) as resp:
            assert resp.status == 200, (resp.status, await resp.text())
    no_tracebacks(caplog)


# ------------------------------------------------------------------ defect 11: long speech


def says_on_join(text: str) -> Any:
    """A setup handler whose agent says `text` as the caller joins."""
    class Speaker(Node):
        async def process_event(self, event: Any) -> None:
            if event.type == "system.user.joined":
                await self.send_event(SDKAgentSpeakEvent(text=text))

    async def setup(session: Any) -> None:
        session.add_node(Speaker(name="speaker"))
        await session.start()
        await session.wait_until_complete()

    return setup


async def test_agent_speak_longer_than_an_argument_may_be(gateway_factory, caplog):
    caplog.set_level(logging.INFO)
    # one argument may be 128 KB (MAX_ARG_STRLEN); mostly spaces, so it speaks briefly
    text = "Hello " + " " * 140_000 + "there, how are you?"
    gw = await gateway_factory(says_on_join(text))
    client = CLIENTS["twilio"](HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(0.6)
    no_tracebacks(caplog)
    assert "synthesis failed" not in caplog.text
    await client.hangup_and_wait()
    await client.close()


async def test_a_megabyte_of_agent_speak_is_synthesised_a_little_ahead(gateway_factory, caplog):
    """1 MB of text (hours of speech) costs the call a few seconds of audio in memory: the
    speaker synthesises it sentence by sentence and only `AHEAD_S` ahead of playout."""
    from gateway.speaker import AHEAD_S

    caplog.set_level(logging.INFO)
    sentence = "This sentence is one of a great many that the agent was told to say. "
    text = sentence * (1_000_000 // len(sentence))
    gw = await gateway_factory(says_on_join(text))
    client = CLIENTS["twilio"](HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(0.2)
    call = next(iter(gw.app.calls.values()))
    before = rss_mb()
    peak_s = 0.0
    t0 = client.loop.time()
    while client.loop.time() - t0 < 3.0:  # while it plays, however fast espeak is
        peak_s = max(peak_s, call.playout.queued_ms / 1000)
        await asyncio.sleep(0.05)
    await client.wait_audio(2.0, after=t0)  # and the caller hears it all along
    grown = rss_mb() - before
    # (+ one piece: the gateway's speech cache hands over a sentence it holds, ~4.5 s, whole)
    assert peak_s <= AHEAD_S + 5.0, peak_s
    assert grown < 30, f"{grown:.0f} MB more while 3 s played"  # unbounded: 100s of MB
    assert not client.problems, client.problems
    no_tracebacks(caplog)
    await client.hangup_and_wait()
    await client.close()


# ------------------------------------------------------------------ defect 12: log forging

FORGED = "\n2025-01-01 00:00:00 ERROR gateway.app: forged\r\x1b[2K\x00"


def forged_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Log messages that hold a line break or another control character."""
    return [r.getMessage() for r in caplog.records
            if any(not c.isprintable() for c in r.getMessage())]


async def test_text_from_the_network_cannot_forge_log_lines(gateway_factory, caplog):
    caplog.set_level(logging.DEBUG)
    gw = await gateway_factory()
    canary = await canary_call(gw)
    async with aiohttp.ClientSession() as http:
        for body in (f'{{"status": "answered", "uuid": "{FORGED}"}}', FORGED * 1000):
            async with http.post(f"{gw.http}/vonage/event", data=body.encode()) as resp:
                assert resp.status == 200
    # a provider's id and a provider's error report
    telnyx = CLIENTS["telnyx"](HOST, gw.port, call_id="v3:" + FORGED)
    await telnyx.connect()
    await telnyx.start()
    telnyx.start_mic()
    await telnyx.wait_audio(0.1)
    await telnyx.send_json({"event": "error", "payload": {"code": 1, "title": FORGED,
                                                         "detail": FORGED}})
    await telnyx.send_json({"event": "media", "media": "not an object"})  # closes it
    await asyncio.wait_for(telnyx.closed.wait(), 5)
    await telnyx.close()
    # an Atoms peer's bad event
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")
    await peer.send(json.dumps({"type": "agent." + FORGED}).encode())
    await until(lambda: peer.errors(), 5, "the peer's warning")
    await peer.close()
    await until(lambda: len(gw.app.calls) == 1 and not gw.app.sessions, 5, "calls to end")
    await canary_keeps_its_audio(canary)
    assert any("vonage event" in r.getMessage() for r in caplog.records)
    assert any("provider reported" in r.getMessage() for r in caplog.records)
    assert not forged_lines(caplog), forged_lines(caplog)[:3]
    assert max(len(r.getMessage()) for r in caplog.records) < 2000  # bounded, too
    await canary.hangup_and_wait()
    await canary.close()


# ------------------------------------------------------------------ defect 14: SIP garbage


async def test_garbage_datagrams_do_not_write_a_log_line_each(gateway_factory, caplog,
                                                              monkeypatch):
    caplog.set_level(logging.DEBUG, logger="gateway")
    window = 2.0  # the ration's (60 s in service): its summary line comes after this
    monkeypatch.setattr("gateway.sip.uas.LogRation", functools.partial(LogRation, window=window))
    gw = await gateway_factory(sip_port=0)
    canary = await canary_call(gw)
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(SipPeer, local_addr=(HOST, 0))
    to = (HOST, gw.app.sip_port)
    sent = 500
    try:
        for i in range(sent):
            garbage = [b"\x00\xff" * 10, b"INVITE\r\n\r\n", f"OPTIONS x{FORGED}".encode(),
                       b"SIP/2.0 200 OK\r\nVia: nope\r\n\r\n"][i % 4]
            transport.sendto(garbage, to)
            if i % 50 == 49:
                await asyncio.sleep(0.01)
        # then a well-formed request: the server heard everything before it
        options = invite(peer.port, to[1], 9999, None).replace(b"INVITE", b"OPTIONS")
        answer = await peer.request(options, to)
        assert answer.startswith("SIP/2.0 200"), answer
    finally:
        transport.close()
    # and, the window over, one line says how many were held back
    summary = re.compile(r"(\d+) more malformed or refused SIP messages in \d+ s \(each "
                         r"logged at DEBUG\)")
    await until(lambda: any(summary.fullmatch(r.getMessage()) for r in caplog.records),
                window + 10, "the summary line")
    sip = [r for r in caplog.records if r.name.startswith("gateway.sip")]
    summaries = [int(m[1]) for r in sip if (m := summary.fullmatch(r.getMessage()))]
    shown = [r for r in sip if r.levelno >= logging.INFO and "malformed" in r.getMessage()
             and not summary.fullmatch(r.getMessage())]
    held = [r for r in sip if r.levelno == logging.DEBUG and "malformed" in r.getMessage()]
    # a burst of 10 a window (one window, unless sending took longer than one), no more
    assert len(shown) <= 10 * len(summaries), [r.getMessage() for r in shown]
    assert all(f" from {HOST}:{peer.port}" in r.getMessage() for r in shown)
    assert len(held) >= sent - 10 * len(summaries)  # the rest at DEBUG ...
    assert sum(summaries) == len(held)  # ... and counted in the summary lines
    assert not forged_lines(caplog)
    await canary_keeps_its_audio(canary)
    await canary.hangup_and_wait()
    await canary.close()


# ------------------------------------------------------------------ defect 14: wire rates


async def test_provider_streams_only_at_documented_rates(gateway_factory, caplog):
    caplog.set_level(logging.INFO, logger="gateway")
    gw = await gateway_factory()
    canary = await canary_call(gw)
    refused = [("twilio", "audio/x-mulaw", r) for r in (1000, 16000, 192000)]
    refused += [("telnyx", enc, r) for enc, r in (("PCMU", 1000), ("PCMA", 192000),
                                                  ("L16", 8000), ("L16", 48000))]
    for provider, encoding, rate in refused:
        client = CLIENTS[provider](HOST, gw.port)
        await client.connect()
        if provider == "twilio":
            await client.send_json({"event": "connected", "protocol": "Call", "version": "1"})
            await client.send_json({
                "event": "start", "sequenceNumber": "1", "streamSid": "MZ1",
                "start": {"streamSid": "MZ1", "callSid": "CArate",
                          "mediaFormat": {"encoding": encoding, "sampleRate": rate,
                                          "channels": 1}}})
        else:
            await client.send_json({"event": "connected", "version": "1.0.0"})
            await client.send_json({
                "event": "start", "sequence_number": "1", "stream_id": "s1",
                "start": {"call_control_id": "v3:rate",
                          "media_format": {"encoding": encoding, "sample_rate": rate,
                                           "channels": 1}}})
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.close_code == UNSUPPORTED_DATA, (provider, encoding, rate)
        assert "sample rate" in client.close_reason, client.close_reason
        await client.close()
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
                and f"sample rate {rate} is not one of" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith(f"{provider}") and said[0].endswith(
            "; closing this call"), said
        caplog.clear()
    assert len(gw.app.calls) == 1  # none of them became a call
    await canary_keeps_its_audio(canary)
    await canary.hangup_and_wait()
    await canary.close()


# ------------------------------------------------------------------ defect 14: RTP latching


class RtpSocket(asyncio.DatagramProtocol):
    """A UDP socket on 127.0.0.1 that counts the RTP packets it receives."""

    def __init__(self) -> None:
        self.packets = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) >= 12 and data[0] >> 6 == 2:
            self.packets += 1

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])


def pcmu_packet(ssrc: int, seq: int) -> bytes:
    header = bytes([0x80, 0]) + (seq & 0xFFFF).to_bytes(2, "big")
    return header + (seq * 160 & 0xFFFFFFFF).to_bytes(4, "big") + ssrc.to_bytes(4, "big") + (
        b"\xff" * 160)


async def test_a_stranger_cannot_take_over_a_sip_calls_media(gateway_factory, caplog):
    caplog.set_level(logging.INFO, logger="gateway")
    gw = await gateway_factory(sip_port=0)
    loop = asyncio.get_running_loop()
    sig_t, sip = await loop.create_datagram_endpoint(SipPeer, local_addr=(HOST, 0))
    caller_t, caller = await loop.create_datagram_endpoint(RtpSocket, local_addr=(HOST, 0))
    stranger_t, stranger = await loop.create_datagram_endpoint(RtpSocket, local_addr=(HOST, 0))
    to = (HOST, gw.app.sip_port)
    sdp = (f"v=0\r\no=caller 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
           f"m=audio {caller.port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n").encode()
    talking: asyncio.Task[None] | None = None
    try:
        ok = await sip.request(invite(sip.port, to[1], 7001, None, body=sdp), to)
        assert ok.startswith("SIP/2.0 200"), ok
        tag = header(ok, "To").split("tag=")[1].split(";")[0]
        body = ok.split("\r\n\r\n", 1)[1]
        media_port = int(body.split("m=audio ")[1].split()[0])
        assert sig_t is not None
        sig_t.sendto(invite(sip.port, to[1], 7001, None, method="ACK", to_tag=tag,
                            branch="-ack"), to)

        async def talk() -> None:  # the caller sends a packet every 20 ms
            for seq in range(100_000):
                caller_t.sendto(pcmu_packet(1234, seq), (HOST, media_port))
                await asyncio.sleep(FRAME_S)

        talking = asyncio.create_task(talk())
        await until(lambda: caller.packets >= 25, 10, "the agent's audio at the caller")
        # the stranger blasts valid packets of the call's codec at the call's media port
        before = caller.packets
        for burst in range(20):
            for seq in range(30):
                stranger_t.sendto(pcmu_packet(666, burst * 30 + seq), (HOST, media_port))
            await asyncio.sleep(FRAME_S)
        await until(lambda: caller.packets >= before + 40, 10, "more audio at the caller")
        assert stranger.packets == 0  # the media never moved to the stranger
        assert talking is not None
        talking.cancel()
        bye = invite(sip.port, to[1], 7001, None, method="BYE", cseq=2, to_tag=tag,
                     branch="-bye")
        assert (await sip.request(bye, to)).startswith("SIP/2.0 200")
        # one line when the stranger's first packet is dropped, a count when the call ends
        dropped = [r.getMessage() for r in caplog.records if "dropped: the call's media" in
                   r.getMessage()]
        assert dropped == [f"RTP from {HOST}:{stranger.port} (ssrc 0000029a) dropped: the "
                           f"call's media comes from {HOST}:{caller.port} (more such packets "
                           "are counted, not logged)"]
        await until(lambda: any("RTP packets from other sources dropped" in r.getMessage()
                                for r in caplog.records), 5, "the call's end line")
    finally:
        if talking is not None:
            talking.cancel()
        for t in (sig_t, caller_t, stranger_t):
            t.close()
