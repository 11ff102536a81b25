"""HTTP routes of the gateway: each provider's answer webhook and media-stream WebSocket
(one per entry of the registry `gateway.protocols.WEBSOCKET_PROTOCOLS`), the web-client
WebSocket and the demo page. (The listeners, WebRTC, SIP and AudioSocket, are the app's:
`AtomsApp.__init__`.)

Each provider's routes check its own scheme once its secret is set (`gateway.route_auth`):
a webhook without a valid signature gets 403, and the stream URL it answers with carries a
per-call token that the stream's WebSocket upgrade must present (403 without it). Twilio
signs the upgrade itself, but only its URL (the same for every call), so its TwiML gives
the token as a `<Parameter>` instead, which the stream's start message must bring back
(else a close with 1008)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway.logtext import printable
from gateway.protocols import WEBSOCKET_PROTOCOLS, StreamProvider
from gateway.protocols.common import CallStarted
from gateway.protocols.exotel import exotel_url_answer
from gateway.protocols.plivo import plivo_xml
from gateway.protocols.provider_signatures import (
    validate_plivo_v3,
    verify_telnyx_signature,
    verify_vonage_jwt,
)
from gateway.protocols.telnyx import telnyx_texml
from gateway.protocols.twilio import twilio_twiml
from gateway.protocols.twilio_signature import validate_twilio_signature
from gateway.protocols.vonage import vonage_ncco
from gateway.route_auth import same_secret
from gateway.transports.media_stream import serve_media_stream
from gateway.transports.webclient import serve_web_client

if TYPE_CHECKING:
    from gateway.app import AtomsApp

log = logging.getLogger(__name__)

XML = "application/xml"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TWILIO_TOKEN_PARAM = "atoms_stream_token"  # the `<Parameter>` with a Twilio stream's token


def external_url(app: AtomsApp, request: web.Request, path: str | None = None,
                 websocket: bool = False) -> str:
    """The URL a provider uses to reach `path` on us (public_url, else the Host header)."""
    if app.settings.public_url:
        base = app.settings.public_url.rstrip("/")
    else:
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme)
        host = request.headers.get("X-Forwarded-Host", request.host)
        base = f"{scheme}://{host}"
    if websocket:
        base = base.replace("https://", "wss://", 1).replace("http://", "ws://", 1)
    return base + (request.path_qs if path is None else path)


async def _form(request: web.Request) -> dict[str, str]:
    if request.method == "POST":
        return {k: str(v) for k, v in (await request.post()).items()}
    return dict(request.query)


async def _json_form(request: web.Request) -> dict[str, str]:
    """A JSON object body's top-level text and number fields (Vonage's answer POST)."""
    try:
        data = await request.json()
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)}


def _twilio_checked(app: AtomsApp, request: web.Request, params: dict[str, str],
                    websocket: bool) -> None:
    token = app.settings.twilio_auth_token
    if not token:
        return
    url = external_url(app, request, websocket=websocket)
    signature = request.headers.get("X-Twilio-Signature")
    if not validate_twilio_signature(token, url, params or None, signature):
        log.warning("rejected request to %s: bad or missing X-Twilio-Signature", request.path)
        raise web.HTTPForbidden(text="invalid Twilio signature")


def _refuse(request: web.Request, why: str) -> web.HTTPForbidden:
    log.warning("rejected request to %s from %s: %s", printable(request.path, 80),
                request.remote, why)
    return web.HTTPForbidden(text=why)


def add_routes(app: AtomsApp) -> None:
    r = app.web.router
    s = app.settings
    tokens = app.stream_tokens  # per-call tokens of the stream URLs our answers give out

    def now() -> float:
        return asyncio.get_running_loop().time()

    def stream_url(request: web.Request, provider: str, secured: bool) -> str:
        """Where the provider's stream goes: with a fresh per-call token when `secured`."""
        url = external_url(app, request, f"/{provider}/stream", websocket=True)
        return f"{url}?token={tokens.issue(now())}" if secured else url

    async def telnyx_checked(request: web.Request) -> None:
        if not s.telnyx_public_key:
            return
        body = await request.read()
        if not verify_telnyx_signature(s.telnyx_public_key,
                                       request.headers.get("telnyx-signature-ed25519"),
                                       request.headers.get("telnyx-timestamp"), body,
                                       time.time()):
            raise _refuse(request, "invalid or missing Telnyx signature")

    async def plivo_checked(request: web.Request) -> None:
        if not s.plivo_auth_token:
            return
        form = await _form(request) if request.method == "POST" else None
        if not validate_plivo_v3(s.plivo_auth_token, request.method, external_url(app, request),
                                 form, request.headers.get("X-Plivo-Signature-V3-Nonce"),
                                 request.headers.get("X-Plivo-Signature-V3")):
            raise _refuse(request, "invalid or missing X-Plivo-Signature-V3")

    async def vonage_checked(request: web.Request) -> None:
        if not s.vonage_signature_secret:
            return
        body = await request.read()
        if verify_vonage_jwt(s.vonage_signature_secret, request.headers.get("Authorization"),
                             body, time.time()) is None:
            raise _refuse(request, "invalid or missing Vonage signed JWT")

    def exotel_checked(request: web.Request) -> None:
        if s.exotel_token and not same_secret(request.query.get("token"), s.exotel_token):
            raise _refuse(request, "missing or wrong token")

    def token_checked(request: web.Request, provider: str, secret: str | None) -> None:
        """A stream's upgrade: the per-call token our answer put in its URL (Exotel: or
        its own `exotel_token`, for a stream URL set in the applet directly)."""
        if not secret:
            return
        given = request.query.get("token")
        if provider == "exotel" and same_secret(given, secret):
            return
        if not tokens.redeem(given, now()):
            raise _refuse(request, f"{provider} stream without a valid per-call token")

    async def twilio_voice(request: web.Request) -> web.Response:
        form = await _form(request)
        _twilio_checked(app, request, form, websocket=False)
        params = {k: form[k] for k in ("CallSid", "From", "To", "Direction") if k in form}
        if s.twilio_auth_token:  # Twilio's upgrade signature covers only the stream's URL,
            # the same for every call: a per-call token binds the stream to this answer
            params[TWILIO_TOKEN_PARAM] = tokens.issue(now())
        url = external_url(app, request, "/twilio/stream", websocket=True)
        return web.Response(text=twilio_twiml(url, params), content_type=XML)

    def twilio_start_checked(started: CallStarted) -> CallStarted | None:
        """The start message must carry the token our TwiML gave (`<Parameter>`); the
        session sees the other parameters only."""
        if not s.twilio_auth_token:
            return started
        params = dict(started.params)
        if not tokens.redeem(params.pop(TWILIO_TOKEN_PARAM, None), now()):
            return None
        return dataclasses.replace(started, params=params)

    async def telnyx_voice(request: web.Request) -> web.Response:
        await telnyx_checked(request)
        url = stream_url(request, "telnyx", bool(s.telnyx_public_key))
        return web.Response(text=telnyx_texml(url), content_type=XML)

    async def plivo_answer(request: web.Request) -> web.Response:
        await plivo_checked(request)
        url = stream_url(request, "plivo", bool(s.plivo_auth_token))
        return web.Response(text=plivo_xml(url), content_type=XML)

    async def exotel_answer(request: web.Request) -> web.Response:
        exotel_checked(request)
        url = stream_url(request, "exotel", bool(s.exotel_token))
        return web.Response(text=exotel_url_answer(url), content_type="application/json")

    async def vonage_answer(request: web.Request) -> web.Response:
        await vonage_checked(request)
        form = await _form(request) if request.method == "POST" else dict(request.query)
        if request.method == "POST" and not form and request.body_exists:
            form = await _json_form(request)  # (Vonage POSTs JSON)
        headers = {k: form[k] for k in ("uuid", "from", "to") if k in form}
        url = stream_url(request, "vonage", bool(s.vonage_signature_secret))
        return web.json_response(vonage_ncco(url, headers=headers))

    async def vonage_event(request: web.Request) -> web.Response:
        await vonage_checked(request)
        body = await request.text()  # (a line break in it must not forge a log line)
        log.info("vonage event: %s", printable(body, 500))
        return web.json_response({})

    # each provider's webhooks besides its stream: (method, leaf, handler)
    webhooks: dict[str, list[tuple[str, str, Handler]]] = {
        "twilio": [("POST", "voice", twilio_voice)],
        "telnyx": [("*", "voice", telnyx_voice)],
        "plivo": [("*", "answer", plivo_answer)],
        "exotel": [("*", "answer", exotel_answer)],
        "vonage": [("*", "answer", vonage_answer), ("*", "event", vonage_event)],
    }

    def stream(provider: str, entry: StreamProvider) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            check_start = None
            if provider == "twilio":  # Twilio signs the upgrade; the token is in `start`
                _twilio_checked(app, request, {}, websocket=True)
                check_start = twilio_start_checked
            else:
                token_checked(request, provider, getattr(s, entry.secret))
            protocol = entry.protocol(max_message=app.settings.max_message_bytes)
            return await serve_media_stream(app, request, protocol, provider,
                                            app.stream_gate, check_start)

        return handler

    for provider, entry in WEBSOCKET_PROTOCOLS.items():  # the served ones, in this order
        if provider not in s.providers:
            continue
        for method, leaf, answer in webhooks.get(provider, []):
            r.add_route(method, f"/{provider}/{leaf}", answer)
        r.add_get(f"/{provider}/stream", stream(provider, entry))

    async def web_client(request: web.Request) -> web.StreamResponse:
        return await serve_web_client(app, request)

    r.add_get("/ws", web_client)
    static = Path(__file__).parent / "static"  # the demo page

    async def demo_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    r.add_get("/", demo_page)
    r.add_static("/static/", static)
