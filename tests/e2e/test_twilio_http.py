"""Twilio's answer webhook and request signatures, end to end: the TwiML's `<Stream>` URL and
`<Parameter>`s drive a real Media Streams call; with an auth token, signatures made by the
`twilio` library's `RequestValidator` are accepted on the webhook and on the WebSocket
upgrade, and tampered or missing ones get 403."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlsplit

import aiohttp
import pytest
import websockets
from twilio.request_validator import RequestValidator

from tests.e2e.clients import TwilioClient
from tests.e2e.harness import HOST

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
    client = TwilioClient(HOST, gw.port, headers={"X-Twilio-Signature": good})
    await client.connect()
    await client.start()
    client.start_mic()
    await gw.rec.session(client.call_id)
    await client.wait_audio(0.3)
    await client.hangup_and_wait()
    await client.close()
