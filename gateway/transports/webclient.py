"""`/ws`: web clients streaming PCM16 audio with JSON control and live session events.

A first message that is a `system.init` event hands the connection to the Atoms event
protocol instead (`gateway.transports.atoms_ws`).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable

from aiohttp import WSCloseCode, WSMsgType, web

from agent.events import SDKEvent, SDKSystemInitEvent, encode_event
from gateway.budget import TokenBucket
from gateway.call import Call
from gateway.host import CallHost, CallRefused
from gateway.idle import IdleTimer
from gateway.media_tick import TickedStream
from gateway.protocols.common import ProtocolError
from gateway.protocols.webclient import (
    AtomsInit,
    WebAudio,
    WebClientProtocol,
    WebDtmf,
    WebEvent,
    WebHangup,
    WebStart,
    WebText,
)
from gateway.transports.atoms_ws import send_error, serve_atoms_protocol
from media.codecs import WireFormat

log = logging.getLogger(__name__)

FIRST_MESSAGE_TIMEOUT = 10.0  # the published SDK waits 10 s for system.init


class WebClientTransport(TickedStream):
    """`Transport` for a web client: PCM16 binary frames and JSON events, paced by the
    app's media tick (`gateway.media_tick`)."""

    def __init__(self, ws: web.WebSocketResponse,
                 writing_paused: Callable[[], bool] = lambda: False) -> None:
        super().__init__(writing_paused)
        self.ws = ws

    async def send_payload(self, payload: bytes) -> None:
        if not self.ws.closed and self.can_send():
            await self.ws.send_bytes(payload)

    async def clear_audio(self) -> None:
        await self._json('{"type":"clear"}')

    async def hangup(self, reason: str | None = None) -> None:
        """The agent ends the call; or, with a `reason`, the gateway does (shutdown, the
        maximum duration), and the page is told so (close code 1001)."""
        text = reason or "agent ended the call"
        await self._json(json.dumps({"type": "end", "reason": text}))
        await self.ws.close(code=WSCloseCode.OK if reason is None else WSCloseCode.GOING_AWAY,
                            message=text.encode()[:120])

    async def transfer(self, target: str) -> None:
        await self.hangup()  # a browser cannot be transferred; the page sees agent.transfer_call

    async def send_event(self, event: SDKEvent) -> None:
        if event.type == "system.llm.request" and getattr(event, "messages", None):
            # The page has seen every transcript already: the conversation is for the
            # agent, not for a browser (it made each typed turn cost the whole call).
            event = event.model_copy(update={"messages": None})
        elif event.type == "agent.audio":
            # the audio itself goes out as binary frames, paced: not a second time as JSON
            event = event.model_copy(update={"pcm": b""})
        await self._json(encode_event(event))

    async def _json(self, text: str) -> None:
        if not self.ws.closed and self.can_send():
            await self.ws.send_str(text)


def authorized(app: CallHost, request: web.Request) -> bool:
    """The optional bearer token: `Authorization: Bearer T` or `?token=T` (browsers)."""
    token = app.settings.ws_token
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    given = given[7:] if given.lower().startswith("bearer ") else request.query.get("token", "")
    return hmac.compare_digest(given.encode(), token.encode())


async def serve_web_client(app: CallHost, request: web.Request) -> web.StreamResponse:
    if not authorized(app, request):
        raise web.HTTPUnauthorized(text="missing or wrong bearer token")
    # twice the limit: the protocol itself refuses oversize messages, with a reason
    ws = web.WebSocketResponse(max_msg_size=2 * app.settings.max_message_bytes)
    await ws.prepare(request)
    handler = request.protocol
    protocol = WebClientProtocol(max_message=app.settings.max_message_bytes)
    transport: WebClientTransport | None = None
    call: Call | None = None
    reason = "client hung up"
    turns: TokenBucket | None = None  # typed turns' budget
    async def close_idle() -> None:
        # (not `idle.timeout`: the timer holds this function, which would then hold the
        # timer, a cycle keeping the whole request until a full collection; issue 23 soak)
        if protocol.started:
            why, after = "idle timeout", app.settings.idle_timeout
        else:
            why, after = "no first message", FIRST_MESSAGE_TIMEOUT
        await send_error(ws, f"{why} after {after:.0f} s", binary=False)
        await ws.close(code=WSCloseCode.GOING_AWAY, message=why.encode())

    idle = IdleTimer(FIRST_MESSAGE_TIMEOUT, close_idle)
    try:
        while True:
            msg = await ws.receive()
            idle.touch()
            if idle.fired:
                reason = "idle timeout" if protocol.started else "no first message"
                break
            if msg.type == WSMsgType.TEXT:
                items = protocol.receive_text(msg.data)
            elif msg.type == WSMsgType.BINARY:
                items = protocol.receive_bytes(msg.data)
            else:
                break
            for item in items:
                if isinstance(item, WebAudio):
                    assert call is not None and transport is not None
                    transport.received(item.pcm, call.now())
                elif isinstance(item, WebStart):
                    transport = WebClientTransport(ws, lambda: handler.writing_paused)
                    transport.open_audio(WireFormat("l16", item.sample_rate), app.media_tick)
                    call = await _open(app, transport, item.context)
                    idle.set_timeout(app.settings.idle_timeout)
                    await ws.send_str(f'{{"type":"started","call_id":"{call.call_id}",'
                                      f'"sample_rate":{item.sample_rate}}}')
                    transport.call = call
                    app.media_tick.join(transport)
                elif isinstance(item, AtomsInit):
                    idle.cancel()
                    return await serve_atoms_protocol(app, ws, item.init)
                elif call is None:
                    continue
                elif isinstance(item, WebDtmf):
                    await call.dtmf(item.digit)
                elif isinstance(item, WebText):
                    if turns is None:
                        turns = TokenBucket(app.settings.text_turns_per_s,
                                            app.settings.text_turn_burst, call.now)
                    if turns.take():
                        await call.user_said(item.text)
                    else:
                        await _refuse_turn(ws, call, turns)
                elif isinstance(item, WebEvent):
                    await call.session.deliver(item.event)
                elif isinstance(item, WebHangup):
                    reason = item.reason
                    await ws.close(code=WSCloseCode.OK)
            if call is not None and call.closed:
                break
    except ProtocolError as exc:
        reason = f"protocol error: {exc}"
        log.warning("%s: %s; closing this call", call.call_id if call else "/ws", exc)
        await send_error(ws, str(exc), binary=call is None)
        await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=str(exc)[:120].encode())
    except CallRefused as exc:
        reason = f"refused: {exc}"
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=str(exc).encode())
    finally:
        idle.cancel()
        if transport is not None:
            app.media_tick.leave(transport)
        if call is not None:
            await app.end_call(call, reason)
        if transport is not None:
            transport.close_audio()
        await idle.wait_idle_done()
        if not ws.closed:
            await ws.close()
    return ws


async def _refuse_turn(ws: web.WebSocketResponse, call: Call, turns: TokenBucket) -> None:
    """A typed turn over the call's budget: dropped, the page told, a log line (the first of
    a run, then every 100th)."""
    why = (f"typed turn dropped: at most {turns.burst:.0f} at once, then "
           f"{turns.rate:g} a second")
    if turns.refused % 100 == 1:
        log.warning("call %s: %s (%d dropped so far)", call.call_id, why, turns.refused)
    await send_error(ws, why, severity="warning", binary=False)


async def _open(app: CallHost, transport: WebClientTransport, context: dict) -> Call:
    init = SDKSystemInitEvent.model_validate({
        "session_context": {"initial_variables": context, "conversation_type": "webcall"}})
    ctx = {"provider": "web", "conversation_type": "webcall", "custom_parameters": context,
           **context}
    return await app.open_call(transport, context=ctx, init_event=init)
