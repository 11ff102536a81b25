"""SIP/RTP in the gateway process: the asyncio shell around the sans-I/O `SipUas`.

One `SipServer` per `AtomsApp` (started with the server when `settings.sip_port` is
set): a UDP endpoint and a TCP listener on that port feed `SipUas.receive`; one
`loop.call_at` handle, re-armed at `SipUas.next_deadline()`, drives its timers
(retransmissions, transaction expiry). The UAS answers with actions: `Send` goes out
on the socket it names, `CallOffered` binds an RTP port, answers with our SDP and
opens the voice loop (`app.open_call`), `CallEnded` (BYE, CANCEL, no ACK, our own
hang-up) ends it (`app.end_call`), `DtmfReceived` (SIP INFO) and RFC 4733 digits go
to `Call.dtmf`. Each call's `RtpTransport` is a member of the app's media tick (the one
20 ms tick of every transport, `gateway.media_tick`), which carries its audio both ways;
the server's own once-a-second housekeeping only looks for callers whose RTP has gone
quiet, and a watcher per call hangs up a call whose voice loop ended by itself. No
threads.

Admission: the allowlist and digest auth are the UAS's; the call limit is the app's
(`settings.max_calls`, shared with every other transport) and gets 503.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agent.events import SDKSystemInitEvent
from gateway.host import CallHost, CallRefused
from gateway.logtext import LogRation
from gateway.read_limits import PendingGate, read_before
from gateway.sip.auth import DigestAuth
from gateway.sip.message import SipParseError, SipStreamParser
from gateway.sip.rtp_session import RtpSession
from gateway.sip.sdp import SdpError, build_offer, negotiate, parse_sdp
from gateway.sip.uas import (
    Action,
    CallConfirmed,
    CallEnded,
    CallOffered,
    CallUpdated,
    DtmfReceived,
    Send,
    SipCall,
    SipUas,
    TransferStatus,
    UasConfig,
)
from gateway.transports.rtp import (
    PortPool,
    RtpEndpoint,
    RtpTransport,
    SendStats,
    local_ip_toward,
)
from runtime.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.call import Call

log = logging.getLogger(__name__)

Addr = tuple[str, int]
QUIET_CHECK_S = 1.0  # look for RTP silence once a second
TCP_IDLE_S = 120.0  # a SIP-over-TCP connection with no call, quiet this long, is closed
END_REASONS = {"bye": "caller hung up", "cancelled": "caller cancelled"}
# The caller's RTP plays through an adaptive jitter buffer (`gateway.sip.jitter`): a
# frame of delay to start with, up to this many as packets come late. Its hold is latency
# on every barge-in (the echo pairing uses each packet's arrival, not its release).
JITTER_START_FRAMES = 1
JITTER_MAX_FRAMES = 5


@dataclass(eq=False)
class SipMedia:
    """What the server keeps per SIP call."""

    sip: SipCall
    transport: RtpTransport
    call: Call | None = None
    late_offer: bool = False
    answer_sdp: bytes = b""
    ended: bool = False


def sip_context(sc: SipCall) -> tuple[dict[str, Any], SDKSystemInitEvent]:
    """The session's context (From, To, Call-ID, X- headers...) and `system.init`."""
    facts = sc.context()
    context: dict[str, Any] = {
        "provider": "sip",
        **facts,
        "caller": facts["user_number"],
        "callee": facts["agent_number"],
        "conversation_type": "telephonyInbound",
    }
    init = SDKSystemInitEvent.model_validate({
        "session_context": {
            "initial_variables": dict(sc.x_headers),
            "conversation_type": "telephonyInbound",
            "caller": {"user_number": facts["user_number"] or None,
                       "agent_number": facts["agent_number"] or None,
                       "direction": "inbound", "call_id": sc.call_id},
        },
    })
    return context, init


def _gateway_call_id(sc: SipCall) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", sc.call_id)[:40]
    return f"sip-{safe}-{sc.local_tag[:6]}"


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: SipServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.server.received(data, (addr[0], addr[1]), "UDP")

    def error_received(self, exc: Exception) -> None:
        log.debug("SIP UDP socket error: %s", exc)


class SipServer:
    """The SIP listener of one `AtomsApp`."""

    def __init__(self, app: CallHost) -> None:
        self.app = app
        s = app.settings
        self.bind_host: str = s.sip_host or s.host
        self.port: int | None = None  # bound port, once listening
        self.uas: SipUas | None = None
        self.ports = PortPool(s.rtp_port_min, s.rtp_port_max)
        self.tick = app.media_tick  # carries every call's audio (with the other transports')
        self.media: dict[SipCall, SipMedia] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._streams: dict[Addr, asyncio.StreamWriter] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ended = SendStats()  # outbound RTP of the calls that have ended
        # TCP connections that have not sent a complete message yet (capped)
        self.tcp_gate = PendingGate("SIP over TCP", s.max_pending_connections)
        self._tcp_timeouts = LogRation(log, "SIP-over-TCP read timeouts")
        self.calls_total = 0

    # -- lifecycle -----------------------------------------------------------------------
    async def start(self, port: int) -> int:
        loop = asyncio.get_running_loop()
        s = self.app.settings
        self.bind_host = s.sip_host or s.host  # as started (`serve --host` included)
        udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(self.bind_host, port))
        self._udp = udp
        self.port = udp.get_extra_info("sockname")[1]
        try:
            self._tcp = await asyncio.start_server(self._serve_stream, self.bind_host, self.port)
        except OSError as exc:
            log.warning("SIP over TCP not available on port %s: %s (UDP only)", self.port, exc)
        advertise = s.sip_advertise or (
            local_ip_toward("192.0.2.1") if _is_wildcard(self.bind_host) else self.bind_host)
        auth = None
        if s.sip_user and s.sip_password:
            auth = DigestAuth(s.sip_realm, {s.sip_user: s.sip_password})
        self.uas = SipUas(UasConfig(
            host=advertise, port=self.port, allow=s.sip_allow or None, auth=auth,
            max_calls=s.max_calls))
        self._housekeeping = asyncio.create_task(self._check_quiet_calls(),
                                                 name="sip-housekeeping")
        log.info("SIP listening on %s:%s (UDP%s), advertised as %s, RTP %s-%s",
                 self.bind_host, self.port, "+TCP" if self._tcp else "", advertise,
                 s.rtp_port_min, s.rtp_port_max)
        return self.port

    async def stop(self) -> None:
        """Hang up calls still up (BYE), then close the sockets."""
        st = self.stats()
        log.info("SIP: %d calls, %d frames sent, %d late (max %.0f ms); media tick lag max "
                 "%.1f ms", st["calls_total"], st["frames_sent"], st["late_frames"],
                 st["max_late_ms"], st["loop_lag_max_ms"])
        if self.uas is not None:
            for sc in list(self.uas.calls):
                self._run(self.uas.hangup(sc, now=self._now()))
        for media in list(self.media.values()):
            await self._finish(media, "server shutdown")
        await cancel_and_wait(self._housekeeping)
        for task in list(self._tasks):
            task.cancel()
        if self._timer is not None:
            self._timer.cancel()
        if self._tcp is not None:
            self._tcp.close()
            for writer in list(self._streams.values()):
                writer.close()
            await self._tcp.wait_closed()
        if self._udp is not None:
            self._udp.close()

    def stats(self) -> dict[str, Any]:
        """Outbound RTP pacing over all calls so far (ended and active)."""
        live = [m.transport.stats for m in self.media.values()]
        max_late = max([self.ended.max_late_ms] + [st.max_late_ms for st in live])
        return {"calls_active": len(self.media), "calls_total": self.calls_total,
                "frames_sent": self.ended.frames + sum(st.frames for st in live),
                "late_frames": self.ended.late + sum(st.late for st in live),
                "max_late_ms": round(max_late, 1),
                "loop_lag_max_ms": round(self.tick.pacer.lag_max_ms, 1)}

    # -- the UAS shell -------------------------------------------------------------------
    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time()

    def received(self, data: bytes | Any, addr: Addr, transport: str) -> None:
        """One datagram or framed stream message: the UAS decides, we act."""
        if self.uas is None:
            return
        try:
            actions = self.uas.receive(data, addr, now=self._now(), transport=transport)
        except Exception:  # the UAS answers bad input itself; never let it end the server
            log.exception("SIP message from %s:%s could not be handled", addr[0], addr[1])
            return
        self._run(actions)

    def _run(self, actions: list[Action]) -> None:
        for action in actions:
            try:
                self._act(action)
            except Exception:
                log.exception("SIP action %s failed", type(action).__name__)
        self._rearm()

    def _rearm(self) -> None:
        """Keep one timer handle armed at the UAS's next deadline."""
        if self.uas is None:
            return
        deadline = self.uas.next_deadline()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = asyncio.get_running_loop().call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, None
        if self.uas is not None:
            try:
                actions = self.uas.on_timer(self._now())
            except Exception:
                log.exception("SIP timer failed")
                actions = []
            self._run(actions)

    def _act(self, action: Action) -> None:
        if isinstance(action, Send):
            self._send(action)
        elif isinstance(action, CallOffered):
            self._spawn(self._offered(action.call), f"sip-offer:{action.call.call_id}")
        elif isinstance(action, CallConfirmed):
            self._confirmed(action.call, action.sdp)
        elif isinstance(action, CallUpdated):
            self._updated(action.call, action.sdp)
        elif isinstance(action, CallEnded):
            media = self.media.get(action.call)
            if media is not None:
                reason = END_REASONS.get(action.reason, action.reason)
                self._spawn(self._finish(media, reason), f"sip-end:{action.call.call_id}")
        elif isinstance(action, DtmfReceived):
            media = self.media.get(action.call)
            if media is not None:
                media.transport.endpoint.digits.append(action.digit)
        elif isinstance(action, TransferStatus):
            level = logging.INFO if action.status < 300 else logging.WARNING
            log.log(level, "call %s: transfer %s %s%s", action.call.call_id, action.status,
                    action.reason, " (final)" if action.final else "")
            media = self.media.get(action.call)
            if action.final and action.status >= 300 and media is not None:
                # the agent stopped talking when it asked for the transfer: without this
                # the caller would sit in silence; they hear the apology and the call ends
                call = media.call
                if call is not None and not call.closed:
                    self._spawn(call.say_and_hang_up(self.app.settings.apology),
                                f"sip-transfer-failed:{action.call.call_id}")

    def _send(self, action: Send) -> None:
        data = action.to_bytes()
        if action.transport == "UDP":
            if self._udp is not None and not self._udp.is_closing():
                self._udp.sendto(data, action.addr)
            return
        writer = self._streams.get(action.addr)
        if writer is None or writer.is_closing():
            log.info("SIP %s to %s:%s dropped: connection gone", action.transport,
                     *action.addr)
            return
        writer.write(data)

    def _spawn(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def _serve_stream(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        """One SIP-over-TCP connection. Until its first complete message it counts
        against `max_pending_connections` (beyond it, it is closed at once), and each
        message must be complete within `header_timeout` of its first byte (the first one
        within that of the connection's opening): a half-open connection, sending part of
        a message or a Content-Length it never meets, is closed. Between messages a
        connection may stay quiet for as long as a call it carries lasts; one that carries
        none is closed after `TCP_IDLE_S` of quiet, as SIP proxies do (a trunk's
        keep-alives, OPTIONS or CRLF, keep it open)."""
        peer = writer.get_extra_info("peername")
        addr: Addr = (peer[0], peer[1])
        if not self.tcp_gate.admit(addr):
            writer.transport.abort()
            return
        pending = True
        self._streams[addr] = writer
        parser = SipStreamParser()
        limit = self.app.settings.header_timeout
        quiet_limit = TCP_IDLE_S
        loop = asyncio.get_running_loop()
        deadline: float | None = loop.time() + limit  # (None: between messages)
        try:
            while True:
                try:
                    data = await read_before(reader, deadline if deadline is not None
                                             else loop.time() + quiet_limit)
                except TimeoutError:
                    if deadline is not None:
                        self._tcp_timeouts.log(
                            loop.time(), logging.INFO, "SIP over TCP from %s:%s: no complete "
                            "message within %g s; closing", addr[0], addr[1], limit)
                        break
                    if self._carries_call(addr):
                        continue
                    log.debug("SIP over TCP from %s:%s: quiet for %g s with no call; closing",
                              addr[0], addr[1], quiet_limit)
                    break
                if not data:
                    break
                if deadline is None and data.strip(b"\r\n"):  # a message begins
                    deadline = loop.time() + limit
                try:
                    messages = parser.feed(data)
                except SipParseError as exc:
                    log.info("SIP over TCP from %s:%s out of sync (%s); closing", *addr, exc)
                    break
                if messages and pending:
                    pending = False
                    self.tcp_gate.done()
                if not parser.buffered:  # between messages (once one came): no deadline
                    if not pending:
                        deadline = None
                elif messages:  # one more message has begun in this read
                    deadline = loop.time() + limit
                for msg in messages:
                    self.received(msg, addr, "TCP")
        except ConnectionError:
            pass
        finally:
            if pending:
                self.tcp_gate.done()
            self._streams.pop(addr, None)
            writer.close()

    def _carries_call(self, addr: Addr) -> bool:
        """A call not ended came in on the TCP connection from `addr`."""
        return self.uas is not None and any(
            c.transport == "TCP" and c.source == addr for c in self.uas.calls)

    # -- calls ---------------------------------------------------------------------------
    def _local_ip(self, sc: SipCall) -> str:
        s = self.app.settings
        if s.sip_advertise:
            return s.sip_advertise
        if not _is_wildcard(self.bind_host):
            return self.bind_host
        return local_ip_toward(sc.source[0])

    async def _offered(self, sc: SipCall) -> None:
        uas, app = self.uas, self.app
        assert uas is not None
        if app.draining or app.active >= app.settings.max_calls:
            log.warning("503 to %s: %s", sc.call_id,
                        "draining" if app.draining else "call limit reached")
            self._run(uas.reject(sc, 503, now=self._now()))
            return
        late_offer = not sc.offer.strip()
        if not late_offer:
            try:
                negotiate(parse_sdp(sc.offer))
            except SdpError as exc:  # NoCommonCodec included
                log.info("488 to %s: %s", sc.call_id, exc)
                self._run(uas.reject(sc, 488, now=self._now()))
                return
        ring_ms = app.settings.sip_ring_ms
        if ring_ms > 0:
            self._run(uas.ring(sc, now=self._now()))
            await asyncio.sleep(ring_ms / 1000)
            if not sc.active:  # cancelled while ringing (the UAS already sent 487)
                return
        local_ip = self._local_ip(sc)
        bind_host = self.bind_host if not _is_wildcard(self.bind_host) else (
            "::" if ":" in local_ip else "0.0.0.0")
        try:
            udp, endpoint, port = await self.ports.bind(bind_host, RtpEndpoint)
        except OSError as exc:
            log.error("503 to %s: %s", sc.call_id, exc)
            self._run(uas.reject(sc, 503, now=self._now()))
            return
        # the endpoint needs its session, the session needs the bound port
        session = RtpSession(local_ip, port, depth_frames=JITTER_START_FRAMES,
                             max_depth_frames=JITTER_MAX_FRAMES)
        endpoint.session = session
        transport = RtpTransport(
            session, udp, endpoint,
            on_hangup=lambda: self.hangup(sc),
            on_transfer=lambda target: self.transfer(sc, target), tick=self.tick)
        media = SipMedia(sc, transport, late_offer=late_offer)
        self.media[sc] = media
        if not sc.active:  # cancelled while we bound the port
            await self._finish(media, END_REASONS.get(sc.end_reason, sc.end_reason))
            return
        if late_offer:
            sdp = build_offer(local_ip, port)
        else:
            sdp = session.answer(sc.offer)
            transport.codec_changed()
        media.answer_sdp = sdp
        self._run(uas.answer(sc, sdp, now=self._now()))
        context, init = sip_context(sc)
        try:
            call = await app.open_call(transport, context=context, init_event=init,
                                       call_id=_gateway_call_id(sc))
        except CallRefused as exc:
            log.warning("call %s refused after answer: %s; hanging up", sc.call_id, exc)
            self.hangup(sc)
            await self._finish(media, f"refused: {exc}")
            return
        except Exception:
            log.exception("call %s: opening the voice loop failed; hanging up", sc.call_id)
            self.hangup(sc)
            await self._finish(media, "open failed")
            return
        media.call = call
        self.calls_total += 1
        if media.ended or not sc.active:
            await app.end_call(call, END_REASONS.get(sc.end_reason, sc.end_reason))
            return
        transport.call = call
        self.tick.join(transport)
        self._spawn(self._watch(media, call), f"sip-watch:{sc.call_id}")

    def _confirmed(self, sc: SipCall, sdp: bytes) -> None:
        media = self.media.get(sc)
        if media is None or not media.late_offer:
            return
        try:  # late offer: the ACK carries the caller's answer to our offer
            media.transport.session.answer(sdp)
            media.transport.codec_changed()
        except SdpError as exc:
            log.warning("call %s: unusable SDP in ACK (%s); hanging up", sc.call_id, exc)
            self.hangup(sc)

    def _updated(self, sc: SipCall, sdp: bytes) -> None:
        """A re-INVITE: hold, resume, new address or codec."""
        assert self.uas is not None
        media = self.media.get(sc)
        if media is None:
            self._run(self.uas.reject(sc, 488, now=self._now()))
            return
        if not sdp.strip():  # offerless re-INVITE: offer what we have
            self._run(self.uas.answer(sc, media.answer_sdp, now=self._now()))
            return
        try:
            answer = media.transport.session.answer(sdp)
        except SdpError as exc:
            log.info("488 to re-INVITE of %s: %s", sc.call_id, exc)
            self._run(self.uas.reject(sc, 488, now=self._now()))
            return
        media.transport.codec_changed()
        media.answer_sdp = answer
        self._run(self.uas.answer(sc, answer, now=self._now()))

    def hangup(self, sc: SipCall) -> None:
        """End the call from our side (BYE, or 480 before the answer)."""
        if self.uas is not None and sc.active:
            self._run(self.uas.hangup(sc, now=self._now()))

    def transfer(self, sc: SipCall, target: str) -> None:
        """Blind transfer with REFER; the UAS ends our leg with BYE once NOTIFY reports 2xx."""
        if self.uas is None:
            return
        try:
            actions = self.uas.transfer(sc, target, now=self._now())
        except ValueError as exc:  # bad target or call state
            log.warning("call %s: cannot transfer to %r: %s", sc.call_id, target, exc)
            return
        log.info("call %s: REFER to %s", sc.call_id, target)
        self._run(actions)

    async def _finish(self, media: SipMedia, reason: str) -> None:
        """The SIP call is over: end the voice loop, free the RTP port."""
        if media.ended:
            return
        media.ended = True
        self.media.pop(media.sip, None)
        self.tick.leave(media.transport)
        media.transport.close()
        st = media.transport.stats
        self.ended.frames += st.frames
        self.ended.late += st.late
        self.ended.max_late_ms = max(self.ended.max_late_ms, st.max_late_ms)
        session = media.transport.session
        strays = (f"; {session.unlatched} RTP packets from other sources dropped"
                  if session.unlatched else "")
        jb = session.jitter
        log.info("call %s ended (%s): %d frames sent, %d late (max %.0f ms), jitter buffer "
                 "%d frames at the end, interarrival jitter %.1f ms, %s%s", media.sip.call_id,
                 reason, st.frames, st.late, st.max_late_ms, jb.depth, jb.jitter_ms, jb.stats,
                 strays)
        if media.call is not None:
            await self.app.end_call(media.call, reason)

    # -- housekeeping (the media is the app's media tick's) ---------------------------------
    async def _watch(self, media: SipMedia, call: Call) -> None:
        """Hang up a call whose voice loop ended by itself (it failed, or the app ended it)
        while the SIP call is still up."""
        await call.wait_closed()
        if not media.ended:
            self.hangup(media.sip)
            # a task, not awaited here: a hang-up's own end (spawned first, with its
            # reason, e.g. "local hangup") runs before it, and this one then finds the
            # media ended
            self._spawn(self._finish(media, "call closed"), f"sip-end:{media.sip.call_id}")

    async def _check_quiet_calls(self) -> None:
        """Once a second: hang up calls whose caller has sent no RTP for the idle timeout."""
        while True:
            await asyncio.sleep(QUIET_CHECK_S)
            for media in list(self.media.values()):
                if media.call is not None and not media.ended:
                    try:
                        self._check_quiet(media)
                    except Exception:
                        log.exception("call %s: RTP check failed", media.sip.call_id)

    def _check_quiet(self, media: SipMedia) -> None:
        tr = media.transport
        neg = tr.session.negotiated
        quiet = tr.check_quiet(QUIET_CHECK_S)
        held = neg is not None and neg.on_hold  # a held caller may send nothing
        if quiet >= self.app.settings.idle_timeout and not held:
            log.warning("call %s: no RTP for %.0f s; hanging up", media.sip.call_id, quiet)
            self.hangup(media.sip)


def add_sip_listener(app: CallHost) -> SipServer:
    """Answer SIP on `settings.sip_port` (when set) with the app's agent; the listener,
    which binds only when the port is set (its `port` is then the bound one)."""
    server = SipServer(app)

    async def start() -> None:
        port = app.settings.sip_port
        if port is None:
            return
        await server.start(port)

    async def stop() -> None:
        if server.port is not None:
            await server.stop()

    app.on_start(start)
    app.on_stop(stop)
    return server
