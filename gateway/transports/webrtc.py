"""WebRTC calls with aiortc: HTTP signalling, one `RTCPeerConnection` per call.

Routes (same optional bearer token as `/ws`):
- `POST /webrtc/offer` `{"sdp", "type": "offer", "context"?: {...}}` -> `{"sdp", "type":
  "answer", "id"}` once ICE gathering is complete (no trickle). The offer must carry an
  audio m-line; the client creates a data channel labelled `events` for live events.
- `DELETE /webrtc/{id}` ends the call.
- `GET /webrtc/config` -> `{"iceServers": [...]}`, the configured STUN/TURN servers in
  the browser's `RTCConfiguration` form.

The call opens when the peer connection is connected. The caller's audio track is
decoded by aiortc, downmixed and resampled to 16 kHz 20 ms frames; the app's media tick
(`gateway.media_tick`, through the call's `TrackFeed`) hears them and pushes each frame
the agent plays to `AgentAudioTrack`, which aiortc's sender pulls. On the `events` channel
the gateway sends every session event worth showing (`encode_event` JSON) plus
`{"type": "clear"}` on barge-in and `{"type": "end", "reason"}`; the client sends the
`/ws` JSON messages (`text`, `dtmf`, `hangup`, or a session event).

ICE failure, the peer closing, the events channel closing, `DELETE`, the agent hanging
up, the call ending by itself and server shutdown all close the peer connection and end
the call through one idempotent `WebRtcPeer.close`.

ICE servers come from `Settings.ice_servers`, one URL each: `stun:host:port`,
`turn:host:port?transport=udp`, with TURN credentials as `turn:user:secret@host:port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import deque
from typing import Any
from urllib.parse import unquote

import numpy as np
from aiohttp import web
from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from agent.events import SDKEvent, SDKSystemInitEvent, encode_event, parse_json
from gateway.call import Call
from gateway.host import CallHost, CallRefused
from gateway.idle import IdleTimer
from gateway.protocols.common import ProtocolError
from gateway.protocols.webclient import (
    WebClientProtocol,
    WebDtmf,
    WebEvent,
    WebHangup,
    WebStart,
    WebText,
)
from gateway.transports.webclient import authorized
from gateway.transports.webrtc_media import AgentAudioTrack, InboundAudio, TrackFeed

log = logging.getLogger(__name__)

GATHER_TIMEOUT = 15.0  # seconds for ICE gathering (an unreachable STUN server times out)
CONNECT_TIMEOUT = 30.0  # seconds from answer to a connected peer
MAX_PENDING_EVENTS = 500  # events held until the data channel opens
END_FLUSH_TIMEOUT = 0.5  # seconds to let the last data-channel message leave
# Browsers send audio without pause while a call is up (a muted track sends silence, Opus
# DTX a packet at least every 400 ms): this long without a frame, the page is gone (closed
# without a DTLS close, crashed, lost its network), long before ICE consent expires (~30 s).
MEDIA_TIMEOUT = 5.0
NOT_SHOWN = frozenset({"agent.audio", "system.audio.chunk"})


class SignallingError(ValueError):
    """A malformed offer request."""


def parse_offer(body: Any) -> tuple[str, dict[str, Any]]:
    """Validate an offer request body; returns (sdp, context)."""
    if not isinstance(body, dict):
        raise SignallingError("the body must be a JSON object {\"sdp\", \"type\": \"offer\"}")
    if body.get("type") != "offer":
        raise SignallingError(f"type must be 'offer', got {body.get('type')!r}")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.startswith("v=0"):
        raise SignallingError("sdp must be an SDP offer (a string starting with v=0)")
    if "\nm=audio " not in sdp.replace("\r\n", "\n"):
        raise SignallingError("the offer has no audio m-line")
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise SignallingError("context must be an object")
    return sdp, context


def parse_ice_server(url: str) -> RTCIceServer:
    """`stun:host:port`, `turn:host:port?transport=udp` or `turn:user:secret@host:port`."""
    scheme, sep, rest = url.strip().partition(":")
    if not sep or scheme not in ("stun", "stuns", "turn", "turns") or not rest:
        raise ValueError(f"ICE server {url!r} must start with stun:, stuns:, turn: or turns:")
    rest = rest.removeprefix("//")
    username = credential = None
    if "@" in rest:
        creds, _, rest = rest.rpartition("@")
        user, _, secret = creds.partition(":")
        username, credential = unquote(user), unquote(secret)
        if scheme.startswith("stun"):
            raise ValueError(f"ICE server {url!r}: STUN servers take no credentials")
    if scheme.startswith("turn") and (not username or not credential):
        raise ValueError(f"ICE server {url!r}: TURN needs user:secret@host")
    return RTCIceServer(urls=f"{scheme}:{rest}", username=username, credential=credential)


def ice_servers(urls: list[str]) -> list[RTCIceServer]:
    return [parse_ice_server(u) for u in urls]


def browser_ice_config(servers: list[RTCIceServer]) -> dict[str, Any]:
    """The servers in the form a browser's `RTCPeerConnection` takes."""
    out = []
    for s in servers:
        item: dict[str, Any] = {"urls": s.urls}
        if s.username:
            item["username"] = s.username
            item["credential"] = s.credential
        out.append(item)
    return {"iceServers": out}


class WebRtcPeer:
    """One WebRTC call: the peer connection, its tracks and data channel, and the `Call`.

    It is the call's `Transport`.
    """

    def __init__(self, server: WebRtcServer, pc: RTCPeerConnection, context: dict[str, Any]):
        self.server = server
        self.app = server.app
        self.pc = pc
        self.id = f"rtc-{uuid.uuid4().hex[:12]}"
        self.context = context
        self.track = AgentAudioTrack()
        self.inbound = InboundAudio()
        self.media = TrackFeed(self.track)  # the call's member of the app's media tick
        self.channel: RTCDataChannel | None = None
        self.call: Call | None = None
        self.remote_audio: list[MediaStreamTrack] = []
        self.reason = "closed"
        self.closed = asyncio.Event()
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_EVENTS)
        self._inbox: asyncio.Queue[str | bytes] = asyncio.Queue()
        self._protocol = WebClientProtocol(max_message=self.app.settings.max_message_bytes)
        self._protocol.started = True  # the offer started the call; no "start" message
        self._tasks: set[asyncio.Task[Any]] = set()
        self._close_task: asyncio.Task[None] | None = None
        self._open_task: asyncio.Task[None] | None = None  # never cancelled: see _close
        self._quiet: IdleTimer | None = None  # a call without caller audio: message timeout
        pc.on("track", self._on_track)
        pc.on("datachannel", self._on_datachannel)
        pc.on("connectionstatechange", self._on_state)

    # -- Transport -------------------------------------------------------------------------
    async def send_audio(self, frame: np.ndarray) -> None:
        await self.media.send_audio(frame)  # pushed to the track in the tick's send step

    def play_now(self) -> None:
        """A talkspurt starts: its first frame goes out now, not at the next tick."""
        self.media.play_now()

    async def clear_audio(self) -> None:
        self.track.clear()
        self._send('{"type":"clear"}')

    async def hangup(self, reason: str | None = None) -> None:
        await self.close(reason or "agent ended the call")

    async def transfer(self, target: str) -> None:
        await self.hangup()  # a browser cannot be transferred; the page saw agent.transfer_call

    async def send_event(self, event: SDKEvent) -> None:
        if event.type in NOT_SHOWN:
            return  # audio travels on the media track, not as base64 on the events channel
        self._send(encode_event(event))

    # -- events channel --------------------------------------------------------------------
    def _send(self, text: str) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(text)
            except Exception as exc:  # the channel went away under us
                log.debug("%s: data channel send failed: %s", self.id, exc)
        elif self._close_task is None:
            self._pending.append(text)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != "events":
            log.info("%s: ignoring data channel %r", self.id, channel.label)
            return
        self.channel = channel
        channel.on("message", self._inbox.put_nowait)
        channel.on("close", lambda: self.close_soon("events channel closed"))
        if channel.readyState == "open":
            self._flush_pending()
        else:
            channel.on("open", self._flush_pending)
        self._spawn(self._handle_messages(), "events")

    def _flush_pending(self) -> None:
        while self._pending and self.channel is not None and self.channel.readyState == "open":
            self.channel.send(self._pending.popleft())

    async def _handle_messages(self) -> None:
        """Client messages in order: typed text, DTMF, hang-up, session events."""
        while True:
            data = await self._inbox.get()
            if self._quiet is not None:
                self._quiet.touch()
            try:
                if isinstance(data, bytes):
                    raise ProtocolError("the events channel takes JSON text, not binary")
                items = self._protocol.receive_text(data)
            except ProtocolError as exc:
                log.info("%s: bad client message: %s", self.id, exc)
                self._send(json.dumps({"type": "error", "message": str(exc)}))
                continue
            for item in items:
                if isinstance(item, WebHangup):
                    self.close_soon(item.reason)
                    return
                call = self.call
                if call is None or isinstance(item, WebStart):
                    continue
                if isinstance(item, WebText):
                    await call.user_said(item.text)
                elif isinstance(item, WebDtmf):
                    await call.dtmf(item.digit)
                elif isinstance(item, WebEvent):
                    await call.session.deliver(item.event)

    # -- media and state -------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self.remote_audio.append(track)
            if self.call is not None:
                self._stop_quiet_timer()  # the audio reader has its own timeout
                self._spawn(self._read_audio(track), "audio-in")

    async def _read_audio(self, track: MediaStreamTrack) -> None:
        call = self.call
        assert call is not None
        idle = IdleTimer(MEDIA_TIMEOUT, lambda: self.close_soon(
            f"no caller audio for {MEDIA_TIMEOUT:.0f} s"))
        try:
            while True:
                frame = await track.recv()
                idle.touch()
                arrived = call.now()
                for f in self.inbound.process(frame):
                    self.media.put_caller_frame(f, arrived)  # heard at the next tick
        except MediaStreamError:
            self.close_soon("caller audio ended")
        finally:
            idle.cancel()

    def _on_state(self) -> None:
        state = self.pc.connectionState
        log.debug("%s: connection %s", self.id, state)
        if state == "connected" and self._open_task is None and self._close_task is None:
            self._open_task = asyncio.create_task(self._open_call(), name=f"open:{self.id}")
        elif state in ("failed", "closed"):
            self.close_soon(f"connection {state}")

    async def _open_call(self) -> None:
        init = SDKSystemInitEvent.model_validate({"session_context": {
            "initial_variables": self.context, "conversation_type": "webcall"}})
        ctx = {"provider": "webrtc", "conversation_type": "webcall",
               "custom_parameters": self.context, **self.context}
        try:
            call = await self.app.open_call(self, context=ctx, init_event=init)
        except CallRefused as exc:
            self._send(json.dumps({"type": "end", "reason": f"refused: {exc}"}))
            self.close_soon(f"refused: {exc}")
            return
        self.call = call
        if self._close_task is not None:
            return  # closed while opening: _close ends the call
        self.media.call = call
        self.media.join(self.app.media_tick)
        self._send(json.dumps({"type": "started", "call_id": call.call_id, "id": self.id}))
        for track in self.remote_audio:
            self._spawn(self._read_audio(track), "audio-in")
        if not self.remote_audio:  # a listen-only page (no microphone): it may type
            timeout = self.app.settings.idle_timeout
            self._quiet = IdleTimer(timeout, lambda: self.close_soon(
                f"no caller audio and no message for {timeout:g} s"))
        self._spawn(self._watch_call(call), "watch")

    def _stop_quiet_timer(self) -> None:
        if self._quiet is not None:
            self._quiet.cancel()
            self._quiet = None

    async def _watch_call(self, call: Call) -> None:
        await call.wait_closed()
        reason = next((e.get("reason") for e in reversed(call.timeline)
                       if e.get("type") == "call.end"), None)
        self.close_soon(reason or "call ended")

    async def watchdog(self) -> None:
        await asyncio.sleep(CONNECT_TIMEOUT)
        if self.call is None:
            self.close_soon(f"not connected after {CONNECT_TIMEOUT:.0f} s")

    # -- lifecycle -------------------------------------------------------------------------
    def _spawn(self, coro: Any, what: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=f"{what}:{self.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def close_soon(self, reason: str) -> None:
        if self._close_task is None:
            self._close_task = asyncio.create_task(self._close(reason), name=f"close:{self.id}")

    async def close(self, reason: str) -> None:
        """End the call and close the peer connection (idempotent; safe from any task)."""
        self.close_soon(reason)
        assert self._close_task is not None
        if self._close_task is not asyncio.current_task():
            await asyncio.shield(self._close_task)

    async def _close(self, reason: str) -> None:
        self.reason = reason
        self.server.peers.pop(self.id, None)
        try:
            current = asyncio.current_task()
            for task in list(self._tasks):
                if task is not current:
                    task.cancel()
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            if self._open_task is not None:
                # cancelling AtomsApp.open_call half-way would strand the session: let it
                # finish, then end the call it made
                await asyncio.wait({self._open_task})
            self._send(json.dumps({"type": "end", "reason": reason}))
            await self._drain_channel()
            if self.call is not None:
                await self.app.end_call(self.call, reason)
            self.track.stop()
            await self.pc.close()
        except Exception:
            log.exception("%s: error while closing", self.id)
        finally:
            self.media.leave()
            self._stop_quiet_timer()
            self._pending.clear()
            self.channel = None
            self.remote_audio.clear()
            self.closed.set()
            log.info("%s: closed (%s)", self.id, reason)

    async def _drain_channel(self) -> None:
        """Give the last message ("end") a moment to leave before the transport closes."""
        channel = self.channel
        if channel is None or channel.readyState != "open":
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(END_FLUSH_TIMEOUT):
                while channel.bufferedAmount > 0 and channel.readyState == "open":
                    await asyncio.sleep(0.01)


class WebRtcServer:
    """The WebRTC routes of one `AtomsApp` and the peers it is serving."""

    def __init__(self, app: CallHost) -> None:
        self.app = app
        self.peers: dict[str, WebRtcPeer] = {}
        self.ice = ice_servers(app.settings.ice_servers)

    def configuration(self) -> RTCConfiguration:
        return RTCConfiguration(iceServers=list(self.ice))

    async def offer(self, request: web.Request) -> web.Response:
        if not authorized(self.app, request):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token")
        try:  # (JSON nested too deeply included: a 400, not a RecursionError's 500)
            sdp, context = parse_offer(parse_json(await request.read()))
        except ValueError as exc:  # includes JSON errors and SignallingError
            raise web.HTTPBadRequest(text=f"bad offer: {exc}") from None
        app = self.app
        pending = sum(1 for p in self.peers.values() if p.call is None)
        if app.draining:
            raise web.HTTPServiceUnavailable(text="server is shutting down")
        if app.active + pending >= app.settings.max_calls:
            raise web.HTTPServiceUnavailable(
                text=f"call limit reached ({app.settings.max_calls})")
        pc = RTCPeerConnection(configuration=self.configuration())
        peer = WebRtcPeer(self, pc, context)
        self.peers[peer.id] = peer
        try:
            async with asyncio.timeout(GATHER_TIMEOUT):
                await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
                pc.addTrack(peer.track)
                await pc.setLocalDescription(await pc.createAnswer())
        except TimeoutError:
            await peer.close("ICE gathering timed out")
            raise web.HTTPGatewayTimeout(text="ICE gathering timed out") from None
        except Exception as exc:
            log.info("rejected offer: %s: %s", type(exc).__name__, exc)
            await peer.close("bad offer")
            raise web.HTTPBadRequest(text=f"bad offer: {exc}") from None
        peer._spawn(peer.watchdog(), "watchdog")
        log.info("%s: answered offer from %s", peer.id, request.remote)
        return web.json_response({"sdp": pc.localDescription.sdp,
                                  "type": pc.localDescription.type, "id": peer.id})

    async def delete(self, request: web.Request) -> web.Response:
        if not authorized(self.app, request):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token")
        peer = self.peers.get(request.match_info["id"])
        if peer is None:
            raise web.HTTPNotFound(text="no such WebRTC call")
        await peer.close("client hung up")
        return web.json_response({"id": peer.id, "ended": True})

    async def config(self, request: web.Request) -> web.Response:
        if not authorized(self.app, request):
            raise web.HTTPUnauthorized(text="missing or wrong bearer token")
        return web.json_response(browser_ice_config(self.ice))

    async def close_all(self) -> None:
        peers = list(self.peers.values())
        await asyncio.gather(*(p.close("server shutdown") for p in peers),
                             return_exceptions=True)


WEBRTC = web.AppKey("webrtc", WebRtcServer)


def add_webrtc_routes(app: CallHost) -> WebRtcServer:
    """Register the WebRTC routes on `app.web` and close every peer at shutdown."""
    server = WebRtcServer(app)
    app.web[WEBRTC] = server
    r = app.web.router
    r.add_post("/webrtc/offer", server.offer)
    r.add_delete("/webrtc/{id}", server.delete)
    r.add_get("/webrtc/config", server.config)
    app.on_stop(server.close_all)
    return server
