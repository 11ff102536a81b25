"""The WebSocket shell shared by every provider media stream (Twilio, Telnyx, Plivo,
Exotel, Vonage): protocol events in, `Call` controls out. A few lines of I/O around the
sans-I/O protocol objects of `gateway.protocols`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from agent.events import SDKEvent, SDKSystemInitEvent
from gateway.call import Call
from gateway.host import CallHost, CallRefused, call_label
from gateway.idle import IdleTimer
from gateway.logtext import printable
from gateway.media_tick import TickedStream
from gateway.protocols.common import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Command,
    DtmfIn,
    Hangup,
    MarkPlayed,
    ProtocolError,
    ProviderError,
    SendAudio,
    SendMark,
    show,
)
from gateway.protocols.wsframe import text_frame
from gateway.read_limits import PendingGate

log = logging.getLogger(__name__)

MARK_EVERY_FRAMES = 5  # a far-end mark every 100 ms of audio keeps "what was heard" exact


class MediaStreamTransport(TickedStream):
    """`Transport` for one provider WebSocket: frames -> codec -> protocol messages, paced
    by the app's media tick (`gateway.media_tick`)."""

    def __init__(self, ws: web.WebSocketResponse, protocol: Any,
                 writing_paused: Callable[[], bool] = lambda: False,
                 socket: asyncio.Transport | None = None) -> None:
        super().__init__(writing_paused)
        self.ws = ws
        self.protocol = protocol
        self._frames = 0
        self.marks = bool(getattr(protocol, "supports_marks", False))
        # JSON providers render an audio message around its payload (`audio_text`) ...
        self._audio_text: Callable[[bytes], str] | None = getattr(protocol, "audio_text", None)
        self._socket = socket  # ... and it may go to the socket as a frame (`_direct`)

    async def send_payload(self, payload: bytes) -> None:
        sock = self._direct()
        out = b""
        if sock is None:
            await self._send(SendAudio(payload))
        elif self._writable():
            assert self._audio_text is not None
            out = text_frame(self._audio_text(payload))
        self._frames += 1
        # a mark every 100 ms, and one after each utterance's last frame (so far): without
        # it the end of the last utterance is confirmed only by the loop's timeout, and the
        # agent counts as talking (caller speech taken for a barge-in attempt) for that
        # long. (An utterance followed back to back by another one would be confirmed by
        # the next one's first mark anyway: the far end plays in order.)
        if self.marks and self.call is not None and (
                self._frames % MARK_EVERY_FRAMES == 0 or self.call.at_play_boundary()):
            if sock is None:
                await self.mark()
            elif (mark := self._mark()) is not None and self._writable():
                for message in self.protocol.send(mark):  # (a JSON provider's: text)
                    out += text_frame(message)
        if sock is not None and out:
            sock.write(out)  # the audio and its mark in one write

    def _direct(self) -> asyncio.Transport | None:
        """The socket, if this stream's audio and marks may be written to it as whole
        frames (`gateway.protocols.wsframe`): a JSON provider's text messages, on a
        connection without a negotiated extension. Else None: aiohttp's writer sends."""
        sock = self._socket
        if sock is None or self._audio_text is None or self.ws.compress or sock.is_closing():
            return None
        return sock

    def _writable(self) -> bool:
        """A message may be sent now (else it is dropped: `can_send`)."""
        return not self.ws.closed and self.can_send()

    # -- the voice loop's side -----------------------------------------------------------
    async def _send(self, cmd: Command) -> None:
        if not self._writable():
            return
        for message in self.protocol.send(cmd):
            if isinstance(message, bytes):
                await self.ws.send_bytes(message)
            else:
                await self.ws.send_str(message)

    async def mark(self) -> None:
        """Label what has been sent so far; the far end reports it back once played."""
        if (mark := self._mark()) is not None:
            await self._send(mark)

    def _mark(self) -> SendMark | None:
        """A mark of what has been sent so far (None if nothing has)."""
        pos = self.call.play_position() if self.call is not None else None
        return SendMark(f"{pos[0]}@{pos[1]:.0f}") if pos is not None else None

    def mark_played(self, name: str) -> None:
        if self.call is None:
            return
        mark = parse_mark(name)
        if mark is None:
            log.debug("ignoring mark %s: not one of ours", show(name))
            return
        self.call.far_end_played(*mark)

    async def clear_audio(self) -> None:
        if getattr(self.protocol, "supports_clear", False):
            await self._send(ClearAudio())

    async def hangup(self, reason: str | None = None) -> None:
        """The agent ends the call; or, with a `reason`, the gateway does (shutdown, the
        maximum duration): the close says so (code 1001)."""
        await self._send(Hangup())
        await self.ws.close(code=WSCloseCode.OK if reason is None else WSCloseCode.GOING_AWAY,
                            message=(reason or "agent ended the call").encode()[:120])

    async def transfer(self, target: str) -> None:
        # Media streams cannot transfer by themselves: the provider's REST API does that.
        log.info("%s: transfer to %s requested; ending the stream so the provider's "
                 "call flow can continue", self.call.call_id if self.call else "?", target)
        await self.hangup()

    async def send_event(self, event: SDKEvent) -> None:
        return None


_MARK_MS = re.compile(r"[0-9]{1,9}")  # whole ms: 11 days of one utterance at most


def parse_mark(name: str) -> tuple[str, float] | None:
    """A far-end mark as we named it (`mark()`: `<utterance id>@<whole ms>`), or None for
    anything else: the far end echoes the name back, so a hostile one (`u1@inf`, `u1@nan`,
    `u1@1e999`, `u1@-5`, a megabyte of digits) is ignored, never parsed as a float."""
    if not isinstance(name, str):
        return None
    utterance_id, at, ms = name.rpartition("@")
    if not at or not utterance_id or _MARK_MS.fullmatch(ms) is None:
        return None
    return utterance_id, float(ms)


def call_context(started: CallStarted, provider: str) -> tuple[dict[str, Any], SDKSystemInitEvent]:
    """The session's context and `system.init` for a provider call."""
    params = dict(started.params)
    context: dict[str, Any] = {
        "provider": provider,
        "call_id": started.call_id,
        "stream_id": started.stream_id,
        "caller": started.from_number or params.get("From", "") or params.get("from", ""),
        "callee": started.to_number or params.get("To", "") or params.get("to", ""),
        "custom_parameters": params,
        "conversation_type": "telephonyInbound",
    }
    init = SDKSystemInitEvent.model_validate({
        "session_context": {
            "initial_variables": params,
            "conversation_type": "telephonyInbound",
            "caller": {"user_number": context["caller"] or None,
                       "agent_number": context["callee"] or None,
                       "direction": "inbound", "call_id": started.call_id},
        },
    })
    return context, init


StartCheck = Callable[[CallStarted], "CallStarted | None"]


async def serve_media_stream(app: CallHost, request: web.Request, protocol: Any,
                             provider: str, gate: PendingGate,
                             check_start: StartCheck | None = None
                             ) -> web.WebSocketResponse:
    """Run one provider WebSocket until the call ends; bad input closes only this call.

    `check_start` sees the start message first: None refuses the call (a close with 1008),
    else the call starts with what it returns (a route's per-call token taken out, say).

    Until its call starts (the provider's start message) the stream counts against
    `max_pending_connections` (beyond it the upgrade gets 503) and has `header_timeout`
    in all to start it (then a close with 1008): an upgraded socket that never starts a
    call holds nothing for long. `gate` counts the app's streams not started yet."""
    if not gate.admit(request.remote):
        raise web.HTTPServiceUnavailable(text="too many streams not started yet")
    pending = {"counted": True}

    def started() -> None:  # once: the call started, or the stream is over
        if pending["counted"]:
            pending["counted"] = False
            gate.done()

    try:
        return await _serve_media_stream(app, request, protocol, provider, started,
                                         check_start)
    finally:
        started()


async def _serve_media_stream(app: CallHost, request: web.Request, protocol: Any,
                              provider: str, started: Callable[[], None],
                              check_start: StartCheck | None) -> web.WebSocketResponse:
    # twice the limit: the protocol itself refuses oversize messages, with a reason
    ws = web.WebSocketResponse(max_msg_size=2 * app.settings.max_message_bytes)
    await ws.prepare(request)
    loop = asyncio.get_running_loop()
    start_by = loop.time() + app.settings.header_timeout
    handler = request.protocol
    transport = MediaStreamTransport(ws, protocol, lambda: handler.writing_paused,
                                     request.transport)
    call: Call | None = None
    reason = "caller hung up"
    async def close_idle() -> None:
        log.warning("%s: no message for %.0f s; closing", _cid(call, provider),
                    app.settings.idle_timeout)
        await ws.close(code=WSCloseCode.GOING_AWAY, message=b"idle timeout")

    idle = IdleTimer(app.settings.idle_timeout, close_idle)
    # JSON providers give caller audio as bare bytes (`JsonMediaStream.receive_audio`)
    receive_text = getattr(protocol, "receive_audio", protocol.receive_text)
    try:
        while True:
            if call is None:  # no call yet: the start message has a deadline
                try:
                    msg = await ws.receive(timeout=max(0.0, start_by - loop.time()))
                except TimeoutError:
                    reason = "no start message in time"
                    log.info("%s: no start message within %g s; closing", provider,
                             app.settings.header_timeout)
                    await ws.close(code=WSCloseCode.POLICY_VIOLATION,
                                   message=b"no start message in time")
                    break
            else:
                msg = await ws.receive()
            idle.touch()
            if idle.fired:
                reason = "idle timeout"
                break
            if msg.type == WSMsgType.TEXT:
                got = receive_text(msg.data)
                if isinstance(got, bytes):  # caller audio: 50 messages a second, no events
                    if call is not None:
                        transport.received(got, call.now())
                        if call.closed:
                            break
                    continue
                events = got
            elif msg.type == WSMsgType.BINARY:
                events = protocol.receive_bytes(msg.data)
            elif msg.type == WSMsgType.ERROR:
                raise ProtocolError(f"websocket error: {ws.exception()}")
            else:  # CLOSE, CLOSING, CLOSED
                break
            ended = False
            for ev in events:
                if isinstance(ev, AudioIn):
                    if call is not None:
                        transport.received(ev.payload, call.now())
                elif isinstance(ev, CallStarted):
                    checked = check_start(ev) if check_start is not None else ev
                    if checked is None:
                        reason = "start without a valid per-call token"
                        log.warning("%s: start message without a valid per-call token; "
                                    "closing", provider)
                        await ws.close(code=WSCloseCode.POLICY_VIOLATION,
                                       message=b"no valid per-call token")
                        ended = True
                        break
                    ev = checked
                    transport.open_audio(ev.wire, app.media_tick)
                    context, init = call_context(ev, provider)
                    started()  # no longer pending
                    call = await app.open_call(transport, context=context, init_event=init,
                                               call_id=ev.call_id or None,
                                               far_end_confirms=transport.marks)
                    transport.call = call
                    app.media_tick.join(transport)
                elif isinstance(ev, DtmfIn) and call is not None:
                    await call.dtmf(ev.digit)
                elif isinstance(ev, MarkPlayed):
                    transport.mark_played(ev.name)
                elif isinstance(ev, CallEnded):
                    reason, ended = ev.reason or "stream stopped", True
                elif isinstance(ev, ProviderError):
                    log.warning("%s: provider reported: %s", _cid(call, provider),
                                printable(ev.message))
            if ended or (call is not None and call.closed):
                break
    except ProtocolError as exc:
        reason = f"protocol error: {exc}"
        log.warning("%s: %s; closing this call", _cid(call, provider), exc)
        await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=str(exc)[:120].encode())
    except CallRefused as exc:
        reason = f"refused: {exc}"
        log.warning("%s: call refused: %s", provider, exc)
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=str(exc).encode())
    finally:
        idle.cancel()
        app.media_tick.leave(transport)
        if call is not None:
            await app.end_call(call, reason)
        transport.close_audio()
        await idle.wait_idle_done()
        if not ws.closed:
            await ws.close()
    return ws


def _cid(call: Call | None, provider: str) -> str:
    """The call as log lines name it (the provider's id escaped: `call_label`)."""
    return (call_label(call.call_id, call.gateway_id) if call is not None
            else f"{provider} (no call yet)")
