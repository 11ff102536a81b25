"""HTTP routes of the gateway, the I/O shell around `gateway.protocols.WEBSOCKET_PROTOCOLS`:
each registered provider's webhooks and media-stream WebSocket (its `StreamProvider`
says what they read, check and answer), then the web-client WebSocket and the demo page.
(The listeners, WebRTC, SIP and AudioSocket, are the app's: `AtomsApp.__init__`.)

Once a provider's secret is set (`gateway.route_auth`), a webhook that fails its check
gets 403, and the stream URL it answers with carries a per-call token that the stream's
WebSocket upgrade must present (403 without it). Twilio signs the upgrade itself, but
only its URL (the same for every call), so its TwiML gives the token as a `<Parameter>`
instead, which the stream's start message must bring back (else a close with 1008)."""

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
from gateway.protocols.webhooks import StreamOffer, Webhook, WebhookRequest, same_secret
from gateway.transports.media_stream import serve_media_stream
from gateway.transports.webclient import serve_web_client

if TYPE_CHECKING:
    from gateway.app import AtomsApp

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def _refuse(request: web.Request, why: str) -> web.HTTPForbidden:
    log.warning("rejected request to %s from %s: %s", printable(request.path, 80),
                request.remote, why)
    return web.HTTPForbidden(text=why)


async def _read(app: AtomsApp, request: web.Request, form: bool = False, body: bool = False,
                websocket: bool = False) -> WebhookRequest:
    """The parts of `request` a provider's check or answer looks at; the form and the body
    only when asked (reading them can fail; aiohttp keeps them once read)."""
    return WebhookRequest(
        method=request.method, url=external_url(app, request, websocket=websocket),
        headers=request.headers, query=request.query, received=time.time(),
        form=await _form(request) if form else {},
        body=await request.read() if body else b"")


def add_routes(app: AtomsApp) -> None:
    r = app.web.router
    s = app.settings
    tokens = app.stream_tokens  # per-call tokens of the stream URLs our answers give out

    def now() -> float:
        return asyncio.get_running_loop().time()

    def webhook(provider: str, entry: StreamProvider, hook: Webhook) -> Handler:
        async def handler(request: web.Request) -> web.Response:
            secret = getattr(s, entry.secret)
            if secret:  # checked before the answer reads more
                got = await _read(app, request, form=entry.signed == "form",
                                  body=entry.signed == "body")
                if why := entry.check(secret, got):
                    raise _refuse(request, why)
            got = await _read(app, request, form=hook.reads_form, body=hook.reads_body)
            url = external_url(app, request, f"/{provider}/stream", websocket=True)
            token = tokens.issue(now()) if secret and hook.offers_stream else None
            answer = hook.answer(got, StreamOffer(url, token))
            return web.Response(text=answer.text, content_type=answer.content_type)

        return handler

    def start_checked(param: str) -> Callable[[CallStarted], CallStarted | None]:
        """The start message must carry the token our answer gave as the parameter `param`;
        the session sees the other parameters only."""
        def check(started: CallStarted) -> CallStarted | None:
            params = dict(started.params)
            if not tokens.redeem(params.pop(param, None), now()):
                return None
            return dataclasses.replace(started, params=params)

        return check

    def stream(provider: str, entry: StreamProvider) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            secret = getattr(s, entry.secret)
            check_start = None
            if secret and entry.start_token:  # the upgrade is signed; the token is in start
                if why := entry.check(secret, await _read(app, request, websocket=True)):
                    raise _refuse(request, why)
                check_start = start_checked(entry.start_token)
            elif secret:  # the per-call token our answer put in the stream URL
                given = request.query.get("token")
                if not (entry.secret_opens_stream and same_secret(given, secret)) \
                        and not tokens.redeem(given, now()):
                    raise _refuse(request, f"{provider} stream without a valid per-call token")
            protocol = entry.protocol(max_message=s.max_message_bytes)
            return await serve_media_stream(app, request, protocol, provider,
                                            app.stream_gate, check_start)

        return handler

    for provider, entry in WEBSOCKET_PROTOCOLS.items():  # the served ones, in this order
        if provider not in s.providers:
            continue
        for hook in entry.webhooks:
            r.add_route(hook.method, f"/{provider}/{hook.leaf}", webhook(provider, entry, hook))
        r.add_get(f"/{provider}/stream", stream(provider, entry))

    async def web_client(request: web.Request) -> web.StreamResponse:
        return await serve_web_client(app, request)

    r.add_get("/ws", web_client)
    static = Path(__file__).parent / "static"  # the demo page

    async def demo_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(static / "index.html")

    r.add_get("/", demo_page)
    r.add_static("/static/", static)
