"""Call hygiene against a running gateway: bad input closes only the offending call (with a
close code and a reason) while a concurrent call carries on; idle calls time out; the call
limit refuses cleanly; `/ws` bearer tokens; `/health` and `/ready`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
import pytest
import websockets

from tests.e2e.harness import HOST, Gateway, listed, start_gateway
from tests.kit.clients import (
    CLIENTS,
    AudioSocketClient,
    CallClient,
    TwilioClient,
    WebClient,
    b64,
    encode,
)

MAX_MESSAGE = 32 * 1024  # the gateway's message limit in these tests
UNSUPPORTED_DATA = 1003
TOO_BIG = 1009
GOING_AWAY = 1001
TRY_AGAIN_LATER = 1013


@dataclass
class Bad:
    """Something one call sends that must close that call (and nothing else)."""

    name: str
    start_first: bool
    payload: Any  # str, bytes, or fn(client) -> str | bytes
    reason: str  # expected in the close reason (lower case)
    codes: tuple[int, ...] = (UNSUPPORTED_DATA,)


def _silence_b64(client: CallClient) -> str:
    return b64(encode(client.codec, np.zeros(client.rate // 50, dtype=np.int16)))


JSON_CASES = [
    Bad("malformed JSON", True, '{"event": "media", "media": {', "malformed json"),
    Bad("bad base64", True, lambda c: json.dumps(c.media_msg("@@not*base64@@")), "base64"),
    Bad("media before start", False, lambda c: json.dumps(c.media_msg(_silence_b64(c))),
        "before 'start'"),
    Bad("binary where text is expected", True, b"\x00" * 160, "binary"),
]
CASES: dict[str, list[Bad]] = {
    "twilio": JSON_CASES,
    "telnyx": JSON_CASES,
    "plivo": JSON_CASES,
    "exotel": JSON_CASES,
    "vonage": [
        Bad("malformed JSON", True, '{"event": "websocket:dtmf", ', "malformed json"),
        Bad("audio before websocket:connected", False, b"\x00" * 640, "before"),
        Bad("odd-length audio", True, b"\x00" * 641, "16-bit samples"),
    ],
    "web": [
        Bad("malformed JSON", True, '{"type": "dtmf", ', "malformed json"),
        Bad("unknown message type", True, '{"type": "launch"}', "unknown message type"),
    ],
}
OVERSIZE = {
    p: Bad("oversize message", True, '{"event": "media", "pad": "' + "a" * (3 * MAX_MESSAGE // 2)
           + '"}', "exceeds", (UNSUPPORTED_DATA, TOO_BIG))
    for p in ("twilio", "telnyx", "plivo", "exotel")
}
OVERSIZE["vonage"] = Bad("oversize message", True, b"\x00" * (3 * MAX_MESSAGE // 2), "exceeds",
                         (UNSUPPORTED_DATA, TOO_BIG))
OVERSIZE["web"] = Bad("oversize message", True, '{"type": "text", "text": "'
                      + "a" * (3 * MAX_MESSAGE // 2) + '"}', "exceeds", (UNSUPPORTED_DATA, TOO_BIG))


async def healthy_call(gw: Gateway) -> TwilioClient:
    """A Twilio call that keeps streaming silence and hearing the greeting."""
    client = TwilioClient(HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await gw.rec.session(client.call_id)
    await client.wait_audio(0.2)
    return client


async def assert_still_fine(gw: Gateway, client: TwilioClient) -> None:
    loop = asyncio.get_running_loop()
    await client.wait_audio(0.3, after=loop.time())
    assert not client.closed.is_set()
    assert not client.problems
    assert listed(gw, client.call_id)
    assert not gw.rec.sessions[client.call_id].is_complete


async def bad_call(gw: Gateway, provider: str, bad: Bad) -> tuple[CallClient, str]:
    client = CLIENTS[provider](HOST, gw.port)
    await client.connect()
    if bad.start_first:
        await client.start()
        await gw.rec.session(client.call_id)
    payload = bad.payload(client) if callable(bad.payload) else bad.payload
    with contextlib.suppress(websockets.ConnectionClosed):
        await client.ws.send(payload)
    try:
        await asyncio.wait_for(client.closed.wait(), 5)
    except TimeoutError:
        return client, f"{bad.name}: the call was not closed"
    finally:
        await client.close()
    problems = []
    if client.close_code not in bad.codes:
        problems.append(f"close code {client.close_code}, expected {bad.codes}")
    if bad.reason not in client.close_reason.lower():
        problems.append(f"close reason {client.close_reason!r} lacks {bad.reason!r}")
    if bad.start_first:
        session = gw.rec.sessions[client.call_id]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(session.wait_until_complete(), 5)
        if not session.is_complete:
            problems.append("its session did not complete")
        if listed(gw, client.call_id):
            problems.append("the gateway still lists the call")
    return client, f"{bad.name}: {'; '.join(problems)}" if problems else ""


@pytest.mark.parametrize("provider", sorted(CASES))
async def test_bad_input_closes_only_that_call(gateway_factory, provider, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    gw = await gateway_factory(max_message_bytes=MAX_MESSAGE)
    good = await healthy_call(gw)
    results = await asyncio.gather(*(bad_call(gw, provider, b) for b in CASES[provider]))
    failures = [msg for _, msg in results if msg]
    assert not failures, f"{provider}: " + " | ".join(failures)
    # each call's fault is logged with its call id
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for (client, _), bad in zip(results, CASES[provider], strict=True):
        if bad.start_first and bad.codes == (UNSUPPORTED_DATA,):
            assert client.call_id in logged, f"{bad.name}: no log line names {client.call_id}"
    await assert_still_fine(gw, good)
    await good.hangup_and_wait()
    await good.close()


@pytest.mark.parametrize("provider", sorted(OVERSIZE))
async def test_oversize_message_closes_only_that_call_with_a_reason(gateway_factory, provider):
    gw = await gateway_factory(max_message_bytes=MAX_MESSAGE)
    good = await healthy_call(gw)
    _, failure = await bad_call(gw, provider, OVERSIZE[provider])
    await assert_still_fine(gw, good)
    assert not failure


async def test_audiosocket_bad_input_closes_only_that_connection(gateway_factory):
    gw = await gateway_factory(audiosocket_port=0)
    good = await healthy_call(gw)
    aport = gw.app.audiosocket_port
    bad_cases = {
        "audio before the UUID": bytes((0x10, 0x01, 0x40)) + b"\x00" * 320,
        "short UUID": bytes((0x01, 0x00, 0x04)) + b"abcd",
        "16 kHz audio on an 8 kHz call": None,  # sent after a valid UUID
    }

    async def one(name: str, data: bytes | None) -> str:
        client = AudioSocketClient(HOST, aport)
        await client.connect()
        if data is None:
            await client.start()
            await gw.rec.session(client.call_id)
            data = bytes((0x12, 0x02, 0x80)) + b"\x00" * 640
        assert client.writer is not None
        client.writer.write(data)
        await client.writer.drain()
        try:
            await asyncio.wait_for(client.closed.wait(), 5)
        except TimeoutError:
            return f"{name}: connection not closed"
        finally:
            await client.close()
        return ""

    failures = [m for m in await asyncio.gather(*(one(k, v) for k, v in bad_cases.items())) if m]
    assert not failures, failures
    await assert_still_fine(gw, good)
    await good.close()


@pytest.mark.parametrize("provider", ["twilio", "web"])
async def test_idle_call_times_out(gateway_factory, provider):
    gw = await gateway_factory(idle_timeout=0.6)
    client = CLIENTS[provider](HOST, gw.port)

    async def dead_far_end(name: str) -> None:  # a dead far end does not even report marks
        return None

    client.mark_played = dead_far_end  # type: ignore[method-assign]
    await client.connect()
    await client.start()  # and then sends nothing at all
    session = await gw.rec.session(client.call_id)
    await asyncio.wait_for(client.closed.wait(), 10)
    assert client.close_code == GOING_AWAY
    assert "idle" in client.close_reason
    await asyncio.wait_for(session.wait_until_complete(), 5)
    await client.close()


async def test_call_limit_refuses_the_next_call_cleanly(gateway_factory):
    gw = await gateway_factory(max_calls=1)
    first = await healthy_call(gw)
    second = TwilioClient(HOST, gw.port)
    await second.connect()
    await second.start()
    await asyncio.wait_for(second.closed.wait(), 5)
    assert second.close_code == TRY_AGAIN_LATER
    assert "limit" in second.close_reason
    assert second.call_id not in gw.rec.sessions  # no session was built for it
    web = WebClient(HOST, gw.port)
    await web.connect()
    await web.send_json({"type": "start", "sample_rate": 16000})
    await asyncio.wait_for(web.closed.wait(), 5)
    assert web.close_code == TRY_AGAIN_LATER
    await assert_still_fine(gw, first)
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http}/health") as resp:
        assert (await resp.json())["active_calls"] == 1
    # once the first call ends, the next one is taken
    await first.hangup_and_wait()
    await asyncio.wait_for(gw.rec.sessions[first.call_id].wait_until_complete(), 5)
    third = await healthy_call(gw)
    for c in (first, second, web, third):
        await c.close()


async def test_ws_bearer_token(gateway_factory):
    gw = await gateway_factory(ws_token="s3cret")
    for headers, query in (({}, ""), ({"Authorization": "Bearer nope"}, ""),
                           ({}, "?token=nope"), ({"Authorization": "Basic czNjcmV0"}, "")):
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(f"{gw.ws}/ws{query}", additional_headers=headers)
        assert info.value.response.status_code == 401
    by_header = WebClient(HOST, gw.port, token="s3cret")
    await by_header.connect()
    await by_header.start()
    assert listed(gw, by_header.call_id)
    by_query = WebClient(HOST, gw.port)
    by_query.path = "/ws?token=s3cret"
    await by_query.connect()
    await by_query.start()
    for c in (by_header, by_query):
        await c.hangup_and_wait()
        await c.close()


async def test_health_and_ready(gateway_factory):
    gw = await gateway_factory()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gw.http}/ready") as resp:
            assert resp.status == 200 and (await resp.json())["ready"] is True
        async with http.get(f"{gw.http}/health") as resp:
            body = await resp.json()
            assert resp.status == 200 and body["status"] == "ok" and body["active_calls"] == 0
        client = await healthy_call(gw)
        async with http.get(f"{gw.http}/health") as resp:
            assert (await resp.json())["active_calls"] == 1
        await client.hangup_and_wait()
        await client.close()


async def test_failing_setup_handler_makes_ready_503_and_refuses_calls(gateway_factory):
    async def broken(session: Any) -> None:
        raise RuntimeError("no agent configured for this number")

    gw = await gateway_factory(broken)
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http}/ready") as resp:
        body = await resp.json()
    assert resp.status == 503
    assert body["ready"] is False
    assert "RuntimeError" in body["reason"] and "no agent configured" in body["reason"]
    client = TwilioClient(HOST, gw.port)
    await client.connect()
    await client.start()
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.close_code == TRY_AGAIN_LATER
    assert "setup handler" in client.close_reason
    await client.close()


async def test_stop_closes_calls_still_active_after_the_drain_timeout():
    gw = await start_gateway()
    client = TwilioClient(HOST, gw.port)  # connected, but sends nothing more after start

    async def silent(name: str) -> None:
        return None

    client.mark_played = silent  # type: ignore[method-assign]
    try:
        await client.connect()
        await client.start()
        session = await gw.rec.session(client.call_id)
        await client.wait_audio(0.2)
        await asyncio.wait_for(gw.app.stop(drain_timeout=0.2), 3)  # a hang guard, not a timing
        await asyncio.wait_for(client.closed.wait(), 2)
        assert session.is_complete
    finally:
        await client.close()
        if gw.app._runner is not None:
            await gw.app.stop(drain_timeout=0)
