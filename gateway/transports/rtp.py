"""RTP media of one SIP call: a UDP socket from the port range, an `RtpSession`, and the
`Transport` the voice loop talks to.

`RtpTransport` is a member of the app's shared 20 ms media tick (`gateway.media_tick`),
the one that paces every transport and `replay`. Each tick the call plays one frame
(`Call.play_tick` gives `send_audio` at most one), the tick encodes every member's G.711
frame in one pass (`media.batch_edge`) and `send_payload` sends it as an RTP packet to
wherever the caller's RTP comes from (symmetric RTP). Then the tick hears: inbound
datagrams go straight into the session's jitter buffer, and each tick `take_payloads`
gives one 20 ms frame of it (`pop_audio`: the last repeated to conceal a lost one; None,
heard as silence without decoding, when nothing arrived, so the voice loop's timing goes
on), decoded with every other member's for `Call.caller_frame`; digits that arrived
(RFC 4733, SIP INFO) reach `Call.dtmf` first. Nothing is buffered at the far end beyond
its jitter buffer, so `clear_audio` only starts a new talkspurt.

The agent's key presses (`send_dtmf`) go out as RFC 4733 events when the caller's SDP
offered telephone-event. After each tick's frame (`after_play`), `dtmf_tick` runs while
the agent has no audio playing or queued: a digit starts only then, so it never cuts
into the agent's speech, and its packets follow one a tick (should the agent start
talking meanwhile, `send_audio` finishes the digit in place of audio frames). 200 ms of
silence follow the last key, or a receiver's jitter buffer may hold its end packets
(baresip does). A hang-up or transfer waits for pressed digits to go out.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from agent.events import SDKEvent
from gateway.media_tick import MediaTick, TickedStream
from gateway.sip.jitter import LOST
from gateway.sip.rtp_session import RtpSession
from media.batch_edge import codec_index
from media.frames import FRAME_MS, FRAME_S

if TYPE_CHECKING:
    from gateway.call import Call

log = logging.getLogger(__name__)

Addr = tuple[str, int]
WIRE_FRAME_BYTES = 8000 * FRAME_MS // 1000  # a frame of G.711 at 8 kHz: 160 bytes
SILENCE = {"pcmu": b"\xff" * WIRE_FRAME_BYTES, "pcma": b"\xd5" * WIRE_FRAME_BYTES}
NEW_TALKSPURT_GAP_S = 0.25  # a pause this long in our sending is silence, not lateness
LATE_S = FRAME_S  # a frame sent more than one frame after its due time is late (a gap
# the caller hears: the event loop stalled, or speech synthesis fell behind real time)
AUDIO_IDLE_S = 1.5 * FRAME_S  # no agent frame for this long: the voice loop is silent
DTMF_FLUSH_S = 0.25  # per digit, at most, that a hang-up waits for pressed keys to go out
DTMF_TAIL_FRAMES = 10  # silence after the last key, so a receiver's jitter buffer lets
# its end packets out (baresip holds the last 5-10 packets until more arrive)
ECHO_TAIL_MS = 350  # a SIP line's echo comes back this late at most: the line's delay,
# the phone's jitter buffer and its 20 ms grid (234-289 ms on a 200 ms line,
# benchmarks/README.md "Live over SIP/RTP"; not our own buffer: a caller frame's time is
# its packet's arrival). A SIP call's barge-in canceller searches this far.


class PortRangeExhausted(OSError):
    """No free RTP port in the configured range."""


class PortPool:
    """Even RTP ports from [low, high], tried round-robin so freed ports rest a while."""

    def __init__(self, low: int, high: int) -> None:
        if not 0 < low <= high <= 65535:
            raise ValueError(f"bad RTP port range {low}-{high}")
        self.ports = list(range(low + (low % 2), high + 1, 2)) or [low]
        self._next = 0

    async def bind(
        self, host: str, factory: Callable[[], RtpEndpoint]
    ) -> tuple[asyncio.DatagramTransport, RtpEndpoint, int]:
        loop = asyncio.get_running_loop()
        for _ in range(len(self.ports)):
            port = self.ports[self._next]
            self._next = (self._next + 1) % len(self.ports)
            try:
                udp, proto = await loop.create_datagram_endpoint(
                    factory, local_addr=(host, port), reuse_port=False
                )
            except OSError:
                continue
            return udp, proto, port
        raise PortRangeExhausted(f"no free RTP port in {self.ports[0]}-{self.ports[-1]}")


class RtpEndpoint(asyncio.DatagramProtocol):
    """The call's RTP socket: files datagrams into the session (jitter buffer, DTMF)."""

    def __init__(self, session: RtpSession | None = None) -> None:
        self.session = session  # set right after binding (the session needs the port)
        self.now: Callable[[], float] | None = None  # the call's clock, for arrivals
        self.digits: list[str] = []
        self.packets = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.packets += 1
        if self.session is None:
            return
        try:
            digits = self.session.receive(data, (addr[0], addr[1]),
                                          self.now() if self.now is not None else None)
        except Exception:  # the session drops garbage itself; this is a last guard
            log.exception("RTP datagram from %s:%s could not be handled", addr[0], addr[1])
            return
        if digits:
            self.digits.extend(digits)

    def error_received(self, exc: Exception) -> None:
        log.debug("RTP socket error: %s", exc)  # ICMP unreachable before the far end is up


@dataclass
class SendStats:
    frames: int = 0
    late: int = 0
    max_late_ms: float = 0.0


class RtpTransport(TickedStream):
    """The voice loop's `Transport` for one SIP call, and its member of the media tick
    (`tick`: it joins once its call is open). Signalling goes through the SIP server:
    `on_hangup()` and `on_transfer(target)`, bound to this call."""

    echo_tail_ms = ECHO_TAIL_MS  # the call's `BargeInConfig.echo_tail_ms` (`AtomsApp.open_call`)

    def __init__(
        self,
        session: RtpSession,
        udp: asyncio.DatagramTransport,
        endpoint: RtpEndpoint,
        *,
        on_hangup: Callable[[], None],
        on_transfer: Callable[[str], None],
        tick: MediaTick,
    ) -> None:
        super().__init__()
        self.session = session
        self.udp = udp
        self.endpoint = endpoint
        self.call: Call | None = None
        self.stats = SendStats()
        self._on_hangup = on_hangup
        self._on_transfer = on_transfer
        self._loop = asyncio.get_running_loop()
        self._encoding = "pcmu"
        self.codec_changed()
        self._tick = tick
        self.slot = tick.edges.acquire()  # this call's filter history in the tick's batch
        self._wire = bytearray()  # caller audio of a packet longer than 20 ms, still to play
        self._wire_arrived: float | None = None  # when the packet at `_wire`'s end came
        self._frame_arrived: float | None = None  # ... and the frame `pop_audio` gave
        endpoint.now = tick.clock.now
        self._last_payload: bytes | None = None
        self._spurt_t0 = 0.0
        self._spurt_n = 0
        self._last_send = 0.0  # RTP time we last accounted for (audio or DTMF tick)
        self._last_audio = 0.0  # when the voice loop last sent a frame
        self._after_dtmf = False  # the next audio frame starts a new talkspurt
        self._digits: deque[str] = deque()  # pressed, not yet started
        self._dtmf_tail = 0  # silent frames still to send after the last key
        self._packets_seen = 0
        self.quiet_s = 0.0  # how long no RTP has arrived (checked once a second)

    def codec_changed(self) -> None:
        """An offer/answer (re)negotiated the codec."""
        self._encoding = self.session.encoding or "pcmu"
        self.codec = codec_index(self._encoding)  # its `BatchEdge` codec number

    # -- Transport ------------------------------------------------------------------------
    async def send_audio(self, frame: np.ndarray) -> None:
        """Account for the frame now; the media tick encodes it with every other member's
        frame of this tick (`take_played`, `send_payload`)."""
        if self.udp.is_closing():
            return
        now = self._loop.time()
        gap = now - self._last_send
        if gap > NEW_TALKSPURT_GAP_S or self._after_dtmf:
            self._keep_real_time(gap)
            self._spurt_t0, self._spurt_n = now, 0
            self._after_dtmf = False
        else:
            late = now - (self._spurt_t0 + self._spurt_n * FRAME_S)
            if late > LATE_S:  # a stall inside a talkspurt: count the 20 ms slots it cost
                self.stats.late += int(late / FRAME_S)
                self.stats.max_late_ms = max(self.stats.max_late_ms, late * 1000)
                self._spurt_t0, self._spurt_n = now, 0  # then measure from here again
        self._spurt_n += 1
        self._last_send = self._last_audio = now
        self.stats.frames += 1
        self._played.append(frame)

    async def send_payload(self, payload: bytes) -> None:
        """Send 20 ms of encoded agent audio as one RTP packet."""
        if self.udp.is_closing():
            return
        out = self.session.next_packet(payload)
        if out is not None:
            self.udp.sendto(out[0], out[1])

    def _keep_real_time(self, gap: float) -> None:
        """Move the RTP timestamp over the `gap` (seconds) since we last sent."""
        sender = self.session.sender
        if sender is not None and self._last_send:
            sender.skip(max(0, int(round(gap / FRAME_S - 1))) * WIRE_FRAME_BYTES)

    async def clear_audio(self) -> None:
        self._digits.clear()  # keys not yet started stop with the agent's audio
        self._dtmf_tail = 0
        if self.session.sender is not None:
            self.session.sender.start_talkspurt()

    async def send_dtmf(self, digits: str) -> bool:
        """Queue key presses as RFC 4733 events; False when the caller did not offer
        telephone-event (the voice loop then plays them as tones)."""
        neg = self.session.negotiated
        if neg is None or neg.dtmf_payload_type is None:
            return False
        self._digits.extend(digits)
        return True

    def after_play(self) -> None:
        """The tick's frame is played: the agent's keys go out while it is silent."""
        call = self.call
        if call is not None and self.dtmf_pending and not call.agent_active:
            self.dtmf_tick()

    def dtmf_tick(self) -> None:
        """Called after each media tick's frame while the agent has no audio to play: send
        this tick's DTMF packet (starting the next pressed key when none is under way) or
        silent frame after the last key."""
        session = self.session
        if not self.dtmf_pending or self.udp.is_closing():
            return
        now = self._loop.time()
        if now - self._last_audio < AUDIO_IDLE_S:
            self._dtmf_tail = 0  # the agent is talking: its frames carry a digit under way
            return
        payload = None  # a DTMF packet, or a silent tick between keys
        if not session.dtmf_pending and self._digits:
            neg = session.negotiated
            if neg is None or neg.dtmf_payload_type is None:
                self._digits.clear()  # a re-INVITE took telephone-event away
                return
            self._keep_real_time(now - self._last_send)
            session.send_digits(self._digits.popleft())
            self._dtmf_tail = DTMF_TAIL_FRAMES
        elif not session.dtmf_pending:
            self._dtmf_tail -= 1
            payload = SILENCE.get(self._encoding, SILENCE["pcmu"])
        out = session.next_packet(payload)
        self._last_send = now
        self._after_dtmf = True
        if out is not None:
            self.udp.sendto(out[0], out[1])

    @property
    def dtmf_pending(self) -> bool:
        """Pressed keys whose packets have not all been sent."""
        return bool(self._digits or self._dtmf_tail) or self.session.dtmf_pending

    async def _flush_dtmf(self) -> None:
        """Let pressed keys go out (the media tick sends them) before the call ends."""
        deadline = self._loop.time() + DTMF_FLUSH_S * (len(self._digits) + 1)
        while self.dtmf_pending and not self.udp.is_closing() and self._loop.time() < deadline:
            await asyncio.sleep(FRAME_S)

    async def hangup(self) -> None:
        await self._flush_dtmf()
        self._on_hangup()

    async def transfer(self, target: str) -> None:
        await self._flush_dtmf()
        self._on_transfer(target)

    async def send_event(self, event: SDKEvent) -> None:
        return None

    # -- inbound, driven by the media tick -------------------------------------------------
    def take_payloads(self) -> tuple[list[bytes | None], list[float]]:
        """This tick's caller audio (`pop_audio`: one 20 ms payload, or None for silence)
        and when it came off the wire, not when the jitter buffer let it go (now, for
        silence and concealment): the barge-in detector pairs it with the agent audio
        whose echo it carries by that time, and the buffer's hold (40 ms and more) would
        otherwise lengthen every SIP call's echo path past what the canceller searches."""
        if self.slot is None or self._tick is None:
            return [], []
        try:
            payload = self.pop_audio()
        except Exception:
            log.exception("call %s: reading its RTP failed",
                          self.call.call_id if self.call is not None else "?")
            payload = None
        arrived = self._frame_arrived
        return [payload], [self._tick.clock.now() if arrived is None else arrived]

    def pop_audio(self) -> bytes | None:
        """This tick's caller audio: 20 ms of G.711 for the media tick to decode with every
        other call's (`BatchEdge`), or None for silence (nothing arrived: silence
        suppression, a held or quiet caller), which needs no decoding. A lost packet is
        concealed by repeating the one before. Packets of any ptime are cut into 20 ms;
        the next packet is popped only when less than 20 ms is left, so any ptime plays
        in real time."""
        wire = self._wire
        self._frame_arrived = None
        while len(wire) < WIRE_FRAME_BYTES:
            payload = self.session.pop_frame()
            arrived = self.session.jitter.popped_arrival
            if payload is LOST:
                payload, self._last_payload = self._last_payload, None  # repeat once
            elif payload is not None:
                self._last_payload = payload  # type: ignore[assignment]
            if not isinstance(payload, bytes) or not payload:
                if not wire:
                    return None
                wire += SILENCE[self._encoding][len(wire) :]  # the rest of a short packet
            elif not wire and len(payload) == WIRE_FRAME_BYTES:
                self._frame_arrived = arrived
                return payload  # the usual case: one 20 ms packet
            else:
                wire += payload
                self._wire_arrived = arrived
        frame = bytes(wire[:WIRE_FRAME_BYTES])
        del wire[:WIRE_FRAME_BYTES]
        if self._wire_arrived is not None:  # (the audio after it in the packet came too)
            self._frame_arrived = self._wire_arrived - len(wire) / WIRE_FRAME_BYTES * FRAME_S
        return frame

    def take_digits(self) -> list[str]:
        if not self.endpoint.digits:
            return []
        digits, self.endpoint.digits = self.endpoint.digits, []
        return digits

    def check_quiet(self, interval_s: float) -> float:
        """Called every `interval_s`: returns how long no RTP has arrived."""
        if self.endpoint.packets != self._packets_seen:
            self._packets_seen = self.endpoint.packets
            self.quiet_s = 0.0
        else:
            self.quiet_s += interval_s
        return self.quiet_s

    def close(self) -> None:
        """The call is over: close the socket and give back the tick's batch slot (the
        SIP server has taken the transport off the tick)."""
        if not self.udp.is_closing():
            self.udp.close()
        self.close_audio()


def local_ip_toward(host: str, fallback: str = "127.0.0.1") -> str:
    """The local address the OS would use to reach `host` (a connected UDP socket sends
    nothing); used in SDP and Contact when we listen on a wildcard address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))
            ip = s.getsockname()[0]
    except OSError:
        return fallback
    return ip if ip not in ("0.0.0.0", "::") else fallback
