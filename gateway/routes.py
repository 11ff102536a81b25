"""HTTP routes of the gateway: each provider's answer webhook and media-stream WebSocket,
the web-client WebSocket, and the AudioSocket listener."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.logtext import printable
from gateway.protocols.exotel import ExotelProtocol, exotel_url_answer
from gateway.protocols.plivo import PlivoProtocol, plivo_xml
from gateway.protocols.telnyx import TelnyxProtocol, telnyx_texml
from gateway.protocols.twilio import TwilioProtocol, twilio_twiml
from gateway.protocols.twilio_signature import validate_twilio_signature
from gateway.protocols.vonage import VonageProtocol, vonage_ncco
from gateway.transports.audiosocket import add_audiosocket_listener
from gateway.transports.media_stream import serve_media_stream
from gateway.transports.sip import add_sip_listener
from gateway.transports.webclient import serve_web_client
from gateway.transports.webrtc import add_webrtc_routes

if TYPE_CHECKING:
    from gateway.app import AtomsApp

log = logging.getLogger(__name__)

XML = "application/xml"


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


def add_routes(app: AtomsApp) -> None:
    r = app.web.router

    async def twilio_voice(request: web.Request) -> web.Response:
        form = await _form(request)
        _twilio_checked(app, request, form, websocket=False)
        params = {k: form[k] for k in ("CallSid", "From", "To", "Direction") if k in form}
        url = external_url(app, request, "/twilio/stream", websocket=True)
        return web.Response(text=twilio_twiml(url, params), content_type=XML)

    async def twilio_stream(request: web.Request) -> web.StreamResponse:
        _twilio_checked(app, request, {}, websocket=True)
        return await serve_media_stream(
            app, request, TwilioProtocol(max_message=app.settings.max_message_bytes), "twilio")

    async def telnyx_voice(request: web.Request) -> web.Response:
        url = external_url(app, request, "/telnyx/stream", websocket=True)
        return web.Response(text=telnyx_texml(url), content_type=XML)

    async def plivo_answer(request: web.Request) -> web.Response:
        url = external_url(app, request, "/plivo/stream", websocket=True)
        return web.Response(text=plivo_xml(url), content_type=XML)

    async def exotel_answer(request: web.Request) -> web.Response:
        url = external_url(app, request, "/exotel/stream", websocket=True)
        return web.Response(text=exotel_url_answer(url), content_type="application/json")

    async def vonage_answer(request: web.Request) -> web.Response:
        form = await _form(request)
        headers = {k: form[k] for k in ("uuid", "from", "to") if k in form}
        url = external_url(app, request, "/vonage/stream", websocket=True)
        return web.json_response(vonage_ncco(url, headers=headers))

    def stream(factory: Callable[..., Any], provider: str) -> Callable[..., Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            protocol = factory(max_message=app.settings.max_message_bytes)
            return await serve_media_stream(app, request, protocol, provider)

        return handler

    r.add_post("/twilio/voice", twilio_voice)
    r.add_get("/twilio/stream", twilio_stream)
    r.add_route("*", "/telnyx/voice", telnyx_voice)
    r.add_get("/telnyx/stream", stream(TelnyxProtocol, "telnyx"))
    r.add_route("*", "/plivo/answer", plivo_answer)
    r.add_get("/plivo/stream", stream(PlivoProtocol, "plivo"))
    r.add_route("*", "/exotel/answer", exotel_answer)
    r.add_get("/exotel/stream", stream(ExotelProtocol, "exotel"))
    r.add_route("*", "/vonage/answer", vonage_answer)
    r.add_get("/vonage/stream", stream(VonageProtocol, "vonage"))

    async def vonage_event(request: web.Request) -> web.Response:
        body = await request.text()  # (a line break in it must not forge a log line)
        log.info("vonage event: %s", printable(body, 500))
        return web.json_response({})

    r.add_route("*", "/vonage/event", vonage_event)

    async def web_client(request: web.Request) -> web.StreamResponse:
        return await serve_web_client(app, request)

    r.add_get("/ws", web_client)
    add_webrtc_routes(app)
    static = Path(__file__).parent / "static"  # the demo page

    async def demo_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    r.add_get("/", demo_page)
    r.add_static("/static/", static)
    add_audiosocket_listener(app)
    add_sip_listener(app)
