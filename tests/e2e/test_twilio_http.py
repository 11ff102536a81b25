"""Twilio's answer webhook and request signatures, end to end: the TwiML's `<Stream>` URL and
`<Parameter>`s drive a real Media Streams call; with an auth token, signatures made by the
`twilio` library's `RequestValidator` are accepted on the webhook and on the WebSocket
upgrade, and tampered or missing ones get 403."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import aiohttp
import pytest
import websockets
from twilio.request_validator import RequestValidator

from tests.e2e.harness import HOST
from tests.kit.clients import TwilioClient

TOKEN = "12345678901234567890123456789012"
FORM = {
    "AccountSid": "AC0123456789abcdef0123456789abcdef",
    "CallSid": "CAfeedc0ffee0123456789abcdef012345",
    "From": "+15550001111",
    "To": "+15550002222",
    "Direction": "inbound",
    "CallStatus": "ringing",
}


def parse_twiml(text: str) -> tuple[str, dict[str, str]]:
    root = ET.fromstring(text)
    assert root.tag == "Response"
    (connect,) = list(root)
    assert connect.tag == "Connect"
    (stream,) = list(connect)
    assert stream.tag == "Stream"
    params = {p.get("name"): p.get("value") for p in stream.iter("Parameter")}
    return stream.get("url") or "", params  # type: ignore[return-value]


async def test_twiml_stream_url_and_parameters_drive_the_call(gateway_factory):
    gw = await gateway_factory()
    async with aiohttp.ClientSession() as http, \
            http.post(f"{gw.http}/twilio/voice", data=FORM) as resp:
        assert resp.status == 200
        assert resp.content_type in ("application/xml", "text/xml")
        url, params = parse_twiml(await resp.text())
    assert url == f"ws://{HOST}:{gw.port}/twilio/stream"
    assert params == {k: FORM[k] for k in ("CallSid", "From", "To", "Direction")}
    # Twilio connects to that URL and returns the parameters as customParameters
    client = TwilioClient(HOST, gw.port, call_id=params["CallSid"], params=params)
    client.path = urlsplit(url).path
    await client.connect()
    await client.start()
    client.start_mic()
    session = await gw.rec.session(FORM["CallSid"])
    await client.wait_audio(0.5)
    assert session.context["custom_parameters"] == params
    assert session.context["caller"] == FORM["From"]
    assert session.caller is not None and session.caller.user_number == FORM["From"]
    await client.hangup_and_wait()
    await client.close()


async def test_webhook_signature_checked(gateway_factory):
    gw = await gateway_factory(twilio_auth_token=TOKEN)
    url = f"{gw.http}/twilio/voice"
    good = RequestValidator(TOKEN).compute_signature(url, FORM)
    other_token = RequestValidator("0" * 32).compute_signature(url, FORM)
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=FORM, headers={"X-Twilio-Signature": good}) as resp:
            assert resp.status == 200
            parse_twiml(await resp.text())
        tampered = {**FORM, "From": "+15559999999"}
        for data, headers in ((tampered, {"X-Twilio-Signature": good}),
                              (FORM, {"X-Twilio-Signature": other_token}),
                              (FORM, {})):
            async with http.post(url, data=data, headers=headers) as resp:
                assert resp.status == 403


async def signed_twiml_params(gw) -> dict[str, str]:
    """The `<Parameter>`s of a signed webhook's TwiML (with the stream's per-call token)."""
    url = f"{gw.http}/twilio/voice"
    signature = RequestValidator(TOKEN).compute_signature(url, FORM)
    async with aiohttp.ClientSession() as http, \
            http.post(url, data=FORM, headers={"X-Twilio-Signature": signature}) as resp:
        assert resp.status == 200
        return parse_twiml(await resp.text())[1]


async def test_websocket_upgrade_signature_checked(gateway_factory):
    gw = await gateway_factory(twilio_auth_token=TOKEN)
    url = f"{gw.ws}/twilio/stream"
    good = RequestValidator(TOKEN).compute_signature(url, {})
    for bad in ({"X-Twilio-Signature": good[:-4] + "AAA="},
                {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(url + "x", {})},
                {}):
        with pytest.raises(websockets.InvalidStatus) as info:
            await websockets.connect(url, additional_headers=bad)
        assert info.value.response.status_code == 403
    params = await signed_twiml_params(gw)
    client = TwilioClient(HOST, gw.port, headers={"X-Twilio-Signature": good}, params=params)
    await client.connect()
    await client.start()
    client.start_mic()
    session = await gw.rec.session(client.call_id)
    await client.wait_audio(0.3)
    # the agent sees the call's parameters, not the gateway's token
    assert session.context["custom_parameters"] == {
        k: FORM[k] for k in ("CallSid", "From", "To", "Direction")}
    await client.hangup_and_wait()
    await client.close()


async def test_a_signed_upgrade_without_the_calls_token_starts_no_call(gateway_factory):
    """Twilio signs only the stream's URL, the same for every call, so a captured upgrade
    signature could be replayed: the start message must also bring back the per-call
    token of a signed webhook's TwiML, once."""
    gw = await gateway_factory(twilio_auth_token=TOKEN)
    good = RequestValidator(TOKEN).compute_signature(f"{gw.ws}/twilio/stream", {})
    params = await signed_twiml_params(gw)
    token = params["atoms_stream_token"]
    assert len(token) >= 32
    honest = TwilioClient(HOST, gw.port, headers={"X-Twilio-Signature": good}, params=params)
    await honest.connect()
    await honest.start()
    honest.start_mic()
    await honest.wait_audio(0.2)
    for forged in ({**params, "atoms_stream_token": "guess"},  # a made-up token
                   params,  # the honest call's token, again
                   {k: v for k, v in params.items() if k != "atoms_stream_token"}):  # none
        replay = TwilioClient(HOST, gw.port, headers={"X-Twilio-Signature": good},
                              params=forged)
        await replay.connect()
        await replay.start()
        await asyncio.wait_for(replay.closed.wait(), 10)
        assert replay.close_code == 1008, replay.close_code
        await replay.close()
    assert len(gw.app.calls) == 1  # the honest call only
    await honest.wait_audio(0.3, after=honest.loop.time())
    await honest.hangup_and_wait()
    await honest.close()
