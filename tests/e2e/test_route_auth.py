"""Authenticated by default (issue 23, item 13), over 127.0.0.1 sockets: each provider's
webhook checks its own signature once its secret is set (signatures made as the provider
makes them: Plivo's official library, PyJWT for Vonage's signed JWT, Ed25519 with
`cryptography` for Telnyx), the stream URL it answers with carries a per-call token that
the WebSocket upgrade must present, once; and the gateway will not listen beyond
loopback while a route is open, unless told `insecure`."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import re
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import aiohttp
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

from gateway.app import AtomsApp, StartupError
from gateway.route_auth import open_routes
from gateway.settings import Settings
from tests.e2e.harness import HOST, Gateway
from tests.kit.clients import CLIENTS, CallClient

FORBIDDEN = 403
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PLIVO_TOKEN = "MjM0NTY3ODkwYWJjZGVmMTIzNDU2Nzg5MGFiY2Rl"
VONAGE_SECRET = "vonage-signature-secret-0123456789abcdef"
EXOTEL_TOKEN = "exotel-shared-secret"


def telnyx_keys() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(serialization.Encoding.Raw,
                                            serialization.PublicFormat.Raw)
    return private, base64.b64encode(raw).decode()


async def post(gw: Gateway, path: str, body: bytes, headers: dict[str, str],
               method: str = "POST") -> tuple[int, str]:
    async with aiohttp.ClientSession() as http, http.request(
            method, f"{gw.http}{path}", data=body, headers=headers) as resp:
        return resp.status, await resp.text()


async def refused_upgrade(gw: Gateway, path: str) -> int:
    """The HTTP status the gateway answers a WebSocket upgrade of `path` with."""
    with pytest.raises(websockets.exceptions.InvalidStatus) as caught:
        async with websockets.connect(f"{gw.ws}{path}", open_timeout=5):
            pass
    return caught.value.response.status_code


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


async def call_on(gw: Gateway, provider: str, path: str) -> CallClient:
    """A call of `provider` on the stream `path` (with its token) that hears the greeting."""
    client = CLIENTS[provider](HOST, gw.port)
    client.path = path
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(0.2)
    return client


async def hang_up(client: CallClient) -> None:
    await client.hangup_and_wait()
    await client.close()


async def test_telnyx_webhook_signature_and_stream_token(gateway_factory):
    private, public = telnyx_keys()
    gw = await gateway_factory(telnyx_public_key=public)
    body = urlencode({"CallSid": "v3:abc", "From": "+15551230000"}).encode()
    stamp = str(int(time.time()))
    signature = base64.b64encode(private.sign(stamp.encode() + b"|" + body)).decode()
    signed = {**FORM, "telnyx-signature-ed25519": signature, "telnyx-timestamp": stamp}
    status, _ = await post(gw, "/telnyx/voice", body, FORM)
    assert status == FORBIDDEN  # unsigned
    status, _ = await post(gw, "/telnyx/voice", body + b"&x=1", signed)
    assert status == FORBIDDEN  # signed, then changed
    forged = base64.b64encode(telnyx_keys()[0].sign(stamp.encode() + b"|" + body)).decode()
    status, _ = await post(gw, "/telnyx/voice", body,
                           {**signed, "telnyx-signature-ed25519": forged})
    assert status == FORBIDDEN  # signed with another key
    status, texml = await post(gw, "/telnyx/voice", body, signed)
    assert status == 200, texml
    url = ET.fromstring(texml).find("./Connect/Stream").get("url")  # type: ignore[union-attr]
    assert re.search(r"/telnyx/stream\?token=[\w-]{20,}$", url), url
    assert await refused_upgrade(gw, "/telnyx/stream") == FORBIDDEN  # no token
    assert await refused_upgrade(gw, "/telnyx/stream?token=guess") == FORBIDDEN
    client = await call_on(gw, "telnyx", path_of(url))
    assert await refused_upgrade(gw, path_of(url)) == FORBIDDEN  # a token works once
    await hang_up(client)


async def test_plivo_v3_signature_and_stream_token(gateway_factory):
    gw = await gateway_factory(plivo_auth_token=PLIVO_TOKEN)
    form = {"CallUUID": "abc-123", "From": "+15551230000", "To": "+15557654321"}
    url = f"{gw.http}/plivo/answer"
    nonce = "05429567804466091622"
    signature = get_signature_v3(PLIVO_TOKEN.encode(), construct_post_url(url, dict(form))
                                 .decode(), nonce.encode()).decode()  # as Plivo signs
    headers = {**FORM, "X-Plivo-Signature-V3": signature, "X-Plivo-Signature-V3-Nonce": nonce}
    body = urlencode(form).encode()
    assert (await post(gw, "/plivo/answer", body, FORM))[0] == FORBIDDEN
    tampered = urlencode({**form, "From": "+10000000000"}).encode()
    assert (await post(gw, "/plivo/answer", tampered, headers))[0] == FORBIDDEN
    status, xml = await post(gw, "/plivo/answer", body, headers)
    assert status == 200, xml
    stream = (ET.fromstring(xml).find("./Stream").text or "").strip()  # type: ignore[union-attr]
    assert "/plivo/stream?token=" in stream, stream
    assert await refused_upgrade(gw, "/plivo/stream") == FORBIDDEN
    client = await call_on(gw, "plivo", path_of(stream))
    await hang_up(client)


def vonage_jwt(body: bytes = b"", secret: str = VONAGE_SECRET) -> str:
    claims: dict[str, object] = {"iat": int(time.time()), "jti": "j1", "iss": "Vonage",
                                 "application_id": "app-1"}
    if body:
        claims["payload_hash"] = hashlib.sha256(body).hexdigest()
    return jwt.encode(claims, secret, algorithm="HS256")


async def test_vonage_signed_jwt_and_stream_token(gateway_factory):
    gw = await gateway_factory(vonage_signature_secret=VONAGE_SECRET)
    query = "?uuid=u-1&from=15551230000&to=15557654321"
    assert (await post(gw, "/vonage/answer" + query, b"", {}, "GET"))[0] == FORBIDDEN
    wrong = {"Authorization": f"Bearer {vonage_jwt(secret='not-the-signature-secret-at-all-0123')}"}
    assert (await post(gw, "/vonage/answer" + query, b"", wrong, "GET"))[0] == FORBIDDEN
    status, ncco = await post(gw, "/vonage/answer" + query, b"",
                              {"Authorization": f"Bearer {vonage_jwt()}"}, "GET")
    assert status == 200, ncco
    uri = json.loads(ncco)[0]["endpoint"][0]["uri"]
    assert "/vonage/stream?token=" in uri, uri
    assert await refused_upgrade(gw, "/vonage/stream") == FORBIDDEN
    client = await call_on(gw, "vonage", path_of(uri))
    await hang_up(client)
    event = json.dumps({"uuid": "u-1", "status": "completed"}).encode()
    json_type = {"Content-Type": "application/json"}
    signed = {**json_type, "Authorization": f"Bearer {vonage_jwt(event)}"}
    assert (await post(gw, "/vonage/event", event, signed))[0] == 200
    assert (await post(gw, "/vonage/event", event.replace(b"completed", b"x"), signed))[0] \
        == FORBIDDEN  # the body does not match payload_hash
    assert (await post(gw, "/vonage/event", event, json_type))[0] == FORBIDDEN


async def test_exotel_token_and_stream_token(gateway_factory):
    gw = await gateway_factory(exotel_token=EXOTEL_TOKEN)
    assert (await post(gw, "/exotel/answer", b"", {}, "GET"))[0] == FORBIDDEN
    assert (await post(gw, "/exotel/answer?token=nope", b"", {}, "GET"))[0] == FORBIDDEN
    status, answer = await post(gw, f"/exotel/answer?token={EXOTEL_TOKEN}", b"", {}, "GET")
    assert status == 200, answer
    url = json.loads(answer)["url"]
    assert "/exotel/stream?token=" in url and EXOTEL_TOKEN not in url, url
    assert await refused_upgrade(gw, "/exotel/stream") == FORBIDDEN
    client = await call_on(gw, "exotel", path_of(url))
    await hang_up(client)
    # a stream URL set in the applet directly carries the shared token
    client = await call_on(gw, "exotel", f"/exotel/stream?token={EXOTEL_TOKEN}")
    await hang_up(client)


async def test_providers_left_out_have_no_routes(gateway_factory):
    gw = await gateway_factory(providers=["twilio"])
    for path in ("/telnyx/voice", "/plivo/answer", "/exotel/answer", "/vonage/answer"):
        assert (await post(gw, path, b"", {}, "GET"))[0] == 404, path
    assert await refused_upgrade(gw, "/telnyx/stream") == 404


# ------------------------------------------------------------------------------ start-up


SECURED = dict(twilio_auth_token="t" * 32, telnyx_public_key=telnyx_keys()[1],
               plivo_auth_token=PLIVO_TOKEN, vonage_signature_secret=VONAGE_SECRET,
               exotel_token=EXOTEL_TOKEN, ws_token="ws-secret")


async def test_open_routes_are_refused_beyond_loopback(caplog):
    """No socket is bound: the refusal comes first."""
    caplog.set_level(logging.INFO)
    app = AtomsApp(host="0.0.0.0", port=0, sip_port=0, stt_phrases=["hello"])
    with pytest.raises(StartupError) as caught:
        await app.start()
    assert "--insecure" in str(caught.value) and "0.0.0.0" in str(caught.value)
    lines = [r.getMessage() for r in caplog.records if "open route" in r.getMessage()]
    assert len(lines) == 7, lines  # five providers, /ws and WebRTC, SIP
    for what in ("/twilio/voice", "/telnyx/voice", "/plivo/answer", "/exotel/answer",
                 "/vonage/answer", "/ws", "SIP"):
        assert sum(what in line for line in lines) == 1, (what, lines)
    assert app.ready_reason == "starting"  # nothing was started


def test_what_counts_as_open() -> None:
    assert open_routes(Settings(**SECURED)) == []
    assert [r.what for r in open_routes(Settings(**{**SECURED, "ws_token": None}))] == [
        "/ws, /webrtc/offer"]
    assert open_routes(Settings(providers=[], ws_token="x")) == []
    assert open_routes(Settings(**SECURED, sip_port=5060, sip_allow=["10.0.0.0/8"])) == []
    assert open_routes(Settings(**SECURED, sip_port=5060, sip_user="u", sip_password="p")) == []
    sip = open_routes(Settings(**SECURED, sip_port=5060, sip_host="127.0.0.1"))
    assert [(r.what, r.host) for r in sip] == [("SIP (port 5060)", "127.0.0.1")]
    assert [r.what for r in open_routes(Settings(**SECURED, audiosocket_port=9092))] == [
        "AudioSocket (port 9092)"]


def test_insecure_or_loopback_starts_with_a_line_per_open_route(caplog) -> None:
    caplog.set_level(logging.INFO)
    AtomsApp(host="0.0.0.0", insecure=True, providers=["twilio"],
             stt_phrases=["hello"])._check_exposure()
    warned = [r for r in caplog.records if "open route" in r.getMessage()]
    assert [r.levelno for r in warned] == [logging.WARNING, logging.WARNING]  # twilio, /ws
    caplog.clear()
    AtomsApp(host="127.0.0.1", stt_phrases=["hello"])._check_exposure()  # make serve
    AtomsApp(host="0.0.0.0", providers=["none"], ws_token="x",
             stt_phrases=["hello"])._check_exposure()  # nothing open
    assert not [r for r in caplog.records if "open route" in r.getMessage()]


CLI = Path(sys.executable).parent / "atoms-gateway"
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_serve_refuses_a_public_address_with_open_routes():
    """The real command line, on 0.0.0.0 with no secrets and no --insecure: exit 1, one
    line per open route and one saying why, no traceback (and nothing bound)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATOMS_")}
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "serve", "--host", "0.0.0.0", "--port", "0", "--providers", "twilio,plivo",
        "--sip-port", "0", "--sip-allow", "10.0.0.0/8", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    text = (out + err).decode()
    assert proc.returncode == 1, text[-2000:]
    assert "Traceback" not in text
    lines = [line for line in text.splitlines() if "open route" in line]
    assert len(lines) == 3, lines  # twilio, plivo, /ws (SIP has its allowlist)
    assert any("--plivo-auth-token" in line for line in lines)
    assert "refusing to listen on 0.0.0.0 with 3 route(s)" in text and "--insecure" in text


async def test_an_agent_server_with_a_token_behind_a_gateway(gateway_factory, caplog):
    """An agent server's /ws takes `ws_token`; the gateway in front names it in its
    `agent_url` (`?token=`), and its calls reach the agent; a wrong token reaches none.
    The token never shows in the gateway's log (the websockets library's own DEBUG lines
    print its request line: not ours to change)."""
    caplog.set_level(logging.DEBUG)
    agents = await gateway_factory(ws_token="agent-server-secret")
    front = await gateway_factory(agent_url=f"{agents.ws}/ws?token=agent-server-secret")
    client = await call_on(front, "twilio", "/twilio/stream")  # hears the remote greeting
    assert len(agents.app.sessions) == 1
    await hang_up(client)
    wrong = await gateway_factory(agent_url=f"{agents.ws}/ws?token=guess",
                                  agent_handshake_timeout=2.0)
    client = CLIENTS["twilio"](HOST, wrong.port)
    await client.connect()
    await client.start()
    client.start_mic()
    # refused by the agent server: the apology, then the hang-up (a call that reached the
    # demo agent stays up until the caller hangs up)
    await asyncio.wait_for(client.closed.wait(), 20)
    await client.close()
    assert any("token=***" in r.getMessage() for r in caplog.records)
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("gateway", "agent", "media")]
    assert not [r.getMessage() for r in ours if "agent-server-secret" in r.getMessage()]
