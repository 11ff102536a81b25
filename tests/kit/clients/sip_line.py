"""A phone on a line calling the gateway over SIP/RTP (UDP, PCMU at 8 kHz), as the live
barge-in flows play it (`benchmarks/bargein_calls_live.py --via sip`).

Signalling reuses the test phone's messages (`tests/sip/phone.py`) and the gateway's
sans-I/O parsers (`gateway.sip.message`, `gateway.sip.sdp`): INVITE with an SDP offer of
PCMU, ACK to the 200, BYE at the end (a BYE from the gateway is answered 200). Media:
`RtpSender` packets (PT 0, one SSRC, consecutive sequence numbers and timestamps) from a
local UDP socket on the phone's own 20 ms clock, carrying `caller` plus the echo of what
the phone played, `echo_ms` later and `echo_db` down (the line's echo, as the Twilio
`LineClient` makes it). What the gateway sends plays as a phone's jitter buffer plays it:
a talkspurt's first packet (RTP marker, a new SSRC, or one that came too late for its
slot) sets where its timestamp plays, `playout_ms` after the 20 ms slot it arrived in,
and the packets after it play by their timestamps from there. SIP has no `clear`: when
the gateway stops sending, what was received still plays.

Everything is on the phone's line clock: sample 0 of the line is the loop time one frame
before the first microphone frame went out (frame i carries what was said in the 20 ms
before it was sent), so `played` (the agent's audio where it played) and `caller` index
alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import numpy as np

from gateway.sip.message import SipParseError, SipRequest, SipResponse, parse_message
from gateway.sip.rtp import RtpError, RtpSender, is_rtcp, parse_rtp
from gateway.sip.sdp import Codec, build_offer, parse_sdp
from tests.kit.clients.base import FRAME_S, decode, encode, frame_slots
from tests.sip.phone import Phone

log = logging.getLogger(__name__)

RATE = 8000
FRAME = RATE * 20 // 1000  # samples in a 20 ms frame
PCMU = 0
PLAYOUT_MS = 40.0  # the phone's jitter buffer: fixed delay after the arrival slot
TAIL_S = 10.0  # room on the line after the caller's last sample

Addr = tuple[str, int]


class _Socket(asyncio.DatagramProtocol):
    """A UDP socket handing each datagram, with its arrival time, to `on_datagram`."""

    def __init__(self, on_datagram: Any) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        self.on_datagram(data, (addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)

    @property
    def addr(self) -> Addr:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return host, port


class SipLineClient:
    """Calls `host:sip_port` and talks `caller` (int16, 8 kHz) over RTP in real time."""

    def __init__(self, host: str, sip_port: int, caller: np.ndarray, echo_db: float | None,
                 echo_ms: float, playout_ms: float = PLAYOUT_MS) -> None:
        self.host, self.sip_port = host, sip_port
        self.caller = caller
        self.gain = 0.0 if echo_db is None else 10 ** (echo_db / 20)
        self.delay = int(round(echo_ms * RATE / 1000))
        self.playout = int(round(playout_ms * RATE / 1000))
        self.played = np.zeros(len(caller) + int(TAIL_S * RATE), dtype=np.float32)
        self.call_id = f"sipline-{uuid.uuid4().hex[:12]}"  # (in the gateway's call id)
        self.loop = asyncio.get_running_loop()
        self.t_line: float | None = None  # loop time of the line's sample 0
        self.sent = asyncio.Event()  # the whole caller channel went out
        self.ended = asyncio.Event()  # BYE sent and answered, or BYE received
        self.gateway_rtp: Addr | None = None
        self.packets_in = 0
        self.late = 0  # packets that came after their slot (a new playout point was set)
        self._sip: _Socket | None = None
        self._rtp: _Socket | None = None
        self._phone: Phone | None = None
        self._responses: asyncio.Queue[SipResponse] = asyncio.Queue()
        self._sender = RtpSender(PCMU)
        self._anchor: tuple[int, int, int] | None = None  # (ssrc, timestamp, line sample)
        self._mic_task: asyncio.Task[None] | None = None

    # -- signalling -------------------------------------------------------------------------
    async def dial(self, timeout: float = 10.0) -> None:
        """INVITE, wait for the 200 (1xx skipped), ACK it; the gateway's RTP address from
        its answer."""
        loop = self.loop
        _, self._sip = await loop.create_datagram_endpoint(
            lambda: _Socket(self._sip_datagram), local_addr=(self.host, 0))
        _, self._rtp = await loop.create_datagram_endpoint(
            lambda: _Socket(self._rtp_datagram), local_addr=(self.host, 0))
        phone = self._phone = Phone(self._sip.addr)
        phone.call_id = f"{self.call_id}@{self.host}"
        offer = build_offer(self.host, self._rtp.addr[1], codecs=(Codec(PCMU, "PCMU"),))
        self._send_sip(phone.invite(body=offer))
        final = await asyncio.wait_for(self._final("INVITE"), timeout)
        self._send_sip(phone.ack(final))
        if final.status != 200:
            raise RuntimeError(f"INVITE answered {final.status} {final.reason}")
        answer = parse_sdp(final.body)
        audio = answer.audio
        if audio is None:
            raise RuntimeError("the 200 OK's SDP has no audio")
        self.gateway_rtp = (audio.connection or answer.connection or self.host, audio.port)

    async def _final(self, method: str) -> SipResponse:
        while True:
            resp = await self._responses.get()
            if resp.cseq[1] == method and resp.status >= 200:
                return resp

    async def hangup(self, timeout: float = 5.0) -> None:
        """BYE (unless the gateway already ended the call) and wait for its 200."""
        if self._phone is None or self.ended.is_set():
            return
        self._send_sip(self._phone.in_dialog("BYE"))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._final("BYE"), timeout)
        self.ended.set()

    def _send_sip(self, data: bytes) -> None:
        assert self._sip is not None and self._sip.transport is not None
        self._sip.transport.sendto(data, (self.host, self.sip_port))

    def _sip_datagram(self, data: bytes, addr: Addr) -> None:
        try:
            msg = parse_message(data)
        except SipParseError:
            log.warning("unparsable SIP from %s:%s", *addr)
            return
        if isinstance(msg, SipResponse):
            if msg.cseq[1] == "INVITE" and msg.status == 200 and self._phone is not None \
                    and self._phone.remote_tag is not None:
                self._send_sip(self._phone.ack(msg))  # a retransmitted 200: ACK it again
                return
            self._responses.put_nowait(msg)
        elif isinstance(msg, SipRequest):
            self._send_sip(Phone.respond(msg, 200))
            if msg.method == "BYE":
                self.ended.set()

    # -- media ------------------------------------------------------------------------------
    def _sample(self, t: float) -> int:
        """The line's sample at loop time `t`."""
        assert self.t_line is not None
        return int(round((t - self.t_line) * RATE))

    def _rtp_datagram(self, data: bytes, addr: Addr) -> None:
        if self.t_line is None or is_rtcp(data):
            return
        try:
            packet = parse_rtp(data)
        except RtpError:
            return
        if packet.payload_type != PCMU or not packet.payload:
            return
        self.packets_in += 1
        next_slot = -(-self._sample(self.loop.time()) // FRAME) * FRAME
        at = None
        if self._anchor is not None and not packet.marker and self._anchor[0] == packet.ssrc:
            ssrc, ts0, at0 = self._anchor
            step = (packet.timestamp - ts0) & 0xFFFFFFFF
            at = at0 + (step - (1 << 32) if step >= 1 << 31 else step)
            if at < next_slot:  # too late for its slot: play it from a new playout point
                self.late += 1
                at = None
        if at is None:
            at = next_slot + self.playout
            self._anchor = (packet.ssrc, packet.timestamp, at)
        pcm = decode("pcmu", packet.payload).astype(np.float32)
        if 0 <= at < len(self.played):
            n = min(len(pcm), len(self.played) - at)
            self.played[at : at + n] = pcm[:n]

    def start_mic(self) -> None:
        self._mic_task = asyncio.create_task(self._mic())

    async def _mic(self) -> None:
        assert self._rtp is not None and self._rtp.transport is not None
        assert self.gateway_rtp is not None
        n = FRAME
        t0 = self.loop.time()
        self.t_line = t0 - FRAME_S  # frame i holds what was said in the 20 ms before it
        async for i in frame_slots(self.loop, t0, len(self.caller) // n):
            frame = self.caller[i * n : (i + 1) * n].astype(np.float32)
            if self.gain:
                lo = i * n - self.delay
                if lo + n > 0:
                    echo = self.played[max(lo, 0) : lo + n]
                    frame[n - len(echo) :] += echo * self.gain
            pcm = np.clip(np.round(frame), -32768, 32767).astype(np.int16)
            if self.ended.is_set() or self._rtp.transport.is_closing():
                break
            self._rtp.transport.sendto(self._sender.packet(encode("pcmu", pcm)),
                                       self.gateway_rtp)
        self.sent.set()

    async def close(self) -> None:
        if self._mic_task is not None:
            self._mic_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._mic_task
        for sock in (self._sip, self._rtp):
            if sock is not None and sock.transport is not None:
                sock.transport.close()
