"""Asterisk AudioSocket over TCP: one connection per call, a few lines around
`gateway.protocols.audiosocket.AudioSocketProtocol`."""

from __future__ import annotations

import asyncio
import logging

from agent.events import SDKEvent
from gateway.call import Call
from gateway.host import CallHost, CallRefused
from gateway.media_tick import TickedStream
from gateway.protocols.audiosocket import AudioSocketProtocol
from gateway.protocols.common import (
    AudioIn,
    CallEnded,
    CallStarted,
    DtmfIn,
    Hangup,
    ProtocolError,
    SendAudio,
)
from gateway.read_limits import PendingGate, peer_text, read_before
from gateway.transports.media_stream import call_context

log = logging.getLogger(__name__)

WRITE_BUFFER_LIMIT = 64 * 1024  # about 4 s of 8 kHz audio unread: the peer is stuck


class AudioSocketTransport(TickedStream):
    """`Transport` for one AudioSocket connection (no clear, no marks: we pace the audio),
    paced by the app's media tick (`gateway.media_tick`)."""

    def __init__(self, writer: asyncio.StreamWriter, protocol: AudioSocketProtocol) -> None:
        transport = writer.transport
        super().__init__(lambda: transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT)
        self.writer = writer
        self.protocol = protocol

    async def send_payload(self, payload: bytes) -> None:
        if not self.writer.is_closing() and self.can_send():
            self.writer.write(self.protocol.encode(SendAudio(payload)))

    async def clear_audio(self) -> None:
        return None  # nothing is buffered at the far end: we stop sending

    async def hangup(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(self.protocol.encode(Hangup()))
            await self.writer.drain()
            self.writer.close()

    async def transfer(self, target: str) -> None:
        log.info("audiosocket: transfer to %s requested; hanging up so the dialplan continues",
                 target)
        await self.hangup()

    async def send_event(self, event: SDKEvent) -> None:
        return None


async def serve_audiosocket(app: CallHost, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter, gate: PendingGate) -> None:
    """Run one AudioSocket call until hang-up; bad input closes only this connection.

    Until the call starts (Asterisk's first frame, the call's UUID) the connection counts
    against `max_pending_connections` and has `header_timeout` in all to send it: a
    garbage or half-sent header is closed then. After that, `idle_timeout` applies."""
    peer = writer.get_extra_info("peername")
    if not gate.admit(peer):
        writer.transport.abort()
        return
    pending = True
    protocol = AudioSocketProtocol()
    transport = AudioSocketTransport(writer, protocol)
    call: Call | None = None
    reason = "caller hung up"
    loop = asyncio.get_running_loop()
    first_by = loop.time() + app.settings.header_timeout
    before_call = 0  # bytes received while no call had started
    try:
        while True:
            try:
                if call is None:
                    data = await read_before(reader, first_by, 4096)
                else:
                    data = await asyncio.wait_for(reader.read(4096), app.settings.idle_timeout)
            except TimeoutError:
                reason = "idle timeout" if call is not None else "no call started in time"
                if call is None:
                    gate.timeouts.log(loop.time(), logging.INFO,
                                      "AudioSocket connection from %s: no call started within "
                                      "%g s (%d bytes received, no complete first frame); "
                                      "closing", peer_text(peer), app.settings.header_timeout,
                                      before_call)
                break
            if call is None:
                before_call += len(data)
            events = protocol.feed(data) if data else protocol.closed()
            for ev in events:
                if isinstance(ev, AudioIn) and call is not None:
                    transport.received(ev.payload, call.now())
                elif isinstance(ev, CallStarted):
                    transport.open_audio(protocol.wire, app.media_tick)
                    context, init = call_context(ev, "audiosocket")
                    if pending:
                        pending = False
                        gate.done()
                    call = await app.open_call(transport, context=context, init_event=init,
                                               call_id=ev.call_id)
                    transport.call = call
                    app.media_tick.join(transport)
                elif isinstance(ev, DtmfIn) and call is not None:
                    await call.dtmf(ev.digit)
                elif isinstance(ev, CallEnded):
                    reason = ev.reason
            if protocol.ended or not data or (call is not None and call.closed):
                break
    except ProtocolError as exc:
        reason = f"protocol error: {exc}"
        log.warning("%s: %s; closing this connection",
                    call.call_id if call else f"AudioSocket connection from {peer_text(peer)}",
                    exc)
    except CallRefused as exc:
        reason = f"refused: {exc}"
        log.warning("AudioSocket connection from %s: call refused: %s", peer_text(peer), exc)
    except ConnectionError as exc:
        reason = f"connection lost: {exc}"
    finally:
        if pending:
            gate.done()
        app.media_tick.leave(transport)
        if call is not None:
            await app.end_call(call, reason)
        transport.close_audio()
        if not writer.is_closing():
            writer.close()


class AudioSocketListener:
    """The AudioSocket listener of one app: binds `settings.audiosocket_port` at start-up
    when it is set (`port` is then the bound one)."""

    def __init__(self, app: CallHost) -> None:
        self.app = app
        self.port: int | None = None  # bound port, once listening
        # connections that have not started their call yet (`max_pending_connections`)
        self.gate = PendingGate("AudioSocket", app.settings.max_pending_connections)
        self._server: asyncio.Server | None = None

    async def start_audiosocket(self) -> None:
        app = self.app
        port = app.settings.audiosocket_port
        if port is None:
            return
        self._server = await asyncio.start_server(
            lambda r, w: serve_audiosocket(app, r, w, self.gate), app.settings.host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("AudioSocket listening on %s:%s", app.settings.host, self.port)

    async def stop_audiosocket(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def add_audiosocket_listener(app: CallHost) -> AudioSocketListener:
    """Listen for AudioSocket connections on `settings.audiosocket_port` (when set)."""
    listener = AudioSocketListener(app)
    app.on_start(listener.start_audiosocket)
    app.on_stop(listener.stop_audiosocket)
    return listener
