"""One call's RTP media state, sans-I/O: SDP answer, symmetric RTP, jitter buffer, DTMF.

`RtpSession` is what the I/O shell around a UDP socket needs per call:
`answer(offer)` negotiates (raising `NoCommonCodec` for a 488) and writes our SDP
with a session version that grows on every re-INVITE; `receive(datagram, addr)`
files audio into the jitter buffer (fixed at `depth_frames`, or adaptive between it and
`max_depth_frames`: `gateway.sip.jitter`; it may skip a frame quieter than `QUIET_PEAK`
to shorten its delay), returns RFC 4733 digits and ignores RTCP, stray
payload types and garbage; `pop_frame()` gives the codec payload for this 20 ms tick;
`next_packet(payload)` gives the datagram to send this tick and where to send it,
sending queued DTMF in place of audio and nothing while the caller holds us.

Symmetric RTP: we send to the SDP address until the caller's first valid packet
arrives, then to wherever their packets come from (NAT), and play only packets from
that source. A new SSRC from the same address is the same far end (a new stream after
a transfer, music on hold) and is taken at once, as is a packet from the SDP address.
Another address takes the media over only after a burst of `LATCH_BURST` packets in a
row from it while the latched source has been quiet for `LATCH_QUIET_POPS` frames
(a caller whose NAT binding moved; about 200 ms of their audio is lost); until then its
packets are dropped (`unlatched`). So a stranger who reaches our port cannot take a
talking caller's media over by sending packets, however fast; one who races the caller's
very first packet, or talks while the caller is silent, still can: the RTP port range
should be firewalled to the trunk's media addresses.
"""

from __future__ import annotations

import logging
import secrets
from collections import deque
from collections.abc import Callable

from gateway.sip.dtmf import DtmfDecoder, dtmf_packets
from gateway.sip.jitter import JitterBuffer, Lost
from gateway.sip.rtp import RtpError, RtpSender, is_rtcp, parse_rtp
from gateway.sip.sdp import Negotiated, build_answer, negotiate, parse_sdp
from media.codecs import alaw_decode, ulaw_decode

__all__ = ["RtpSession", "quiet_test"]

log = logging.getLogger(__name__)

Addr = tuple[str, int]
COMFORT_NOISE_PT = 13
LATCH_BURST = 10  # packets in a row from a new address before the media moves there ...
LATCH_QUIET_POPS = 10  # ... while the latched source sent nothing for this many frames
QUIET_PEAK = 328  # (-40 dBFS) a frame no sample of which is louder is silence or line noise


def _quiet_codes(decode: Callable[[bytes], object]) -> bytes:
    """The G.711 code bytes whose sample is within `QUIET_PEAK` of zero."""
    samples = decode(bytes(range(256)))
    return bytes(b for b in range(256) if abs(int(samples[b])) <= QUIET_PEAK)  # type: ignore[index]


_QUIET = {"pcmu": _quiet_codes(ulaw_decode), "pcma": _quiet_codes(alaw_decode)}


def quiet_test(encoding: str) -> Callable[[bytes], bool]:
    """Is a G.711 payload all quiet samples? (What is left once they are deleted is
    nothing: one C pass over the payload.)"""
    codes = _QUIET[encoding]
    return lambda payload: not payload.translate(None, codes)


class RtpSession:
    def __init__(
        self, local_ip: str, local_port: int, *, depth_frames: int = 2,
        max_depth_frames: int | None = None, dtmf_ms: int = 100
    ) -> None:
        self.local_ip = local_ip
        self.local_port = local_port
        self.negotiated: Negotiated | None = None
        self.remote_addr: Addr | None = None
        self.jitter = JitterBuffer(depth_frames, max_depth=max_depth_frames)
        self.dtmf = DtmfDecoder()
        self.dtmf_ms = dtmf_ms
        self.sender: RtpSender | None = None
        self.ignored = 0  # RTCP, stray or malformed datagrams
        self.unlatched = 0  # valid packets dropped: from a source we have not latched to
        self._session_id = secrets.randbelow(2**31)
        self._version = 0
        self._source: tuple[Addr, int] | None = None  # latched (address, SSRC)
        self._quiet = 0  # frames popped since the latched source's last packet
        self._candidate: tuple[Addr, int] | None = None  # another source, and ...
        self._candidate_run = 0  # ... its packets in a row
        self._dtmf_out: deque[bytes | None] = deque()
        self._digits_waiting: deque[str] = deque()

    @property
    def encoding(self) -> str | None:
        """'pcmu' or 'pcma' once negotiated (the `media.codecs` encoding name)."""
        return self.negotiated.encoding if self.negotiated else None

    def answer(self, offer: bytes) -> bytes:
        """Negotiate `offer` (initial or re-INVITE) and return our SDP answer."""
        parsed = parse_sdp(offer)
        neg = negotiate(parsed)
        previous = self.negotiated
        self.negotiated = neg
        self._version += 1
        if previous is None or (previous.remote_host, previous.remote_port) != (
            neg.remote_host,
            neg.remote_port,
        ):
            self.remote_addr = (neg.remote_host, neg.remote_port)
            self._source = self._candidate = None  # the far end moved: latch again
        self.jitter.quiet = quiet_test(neg.encoding)
        if self.sender is None:
            self.sender = RtpSender(neg.codec.payload_type)
        elif self.sender.payload_type != neg.codec.payload_type:
            self.sender.payload_type = neg.codec.payload_type
            self.sender.start_talkspurt()
        return build_answer(
            parsed,
            neg,
            self.local_ip,
            self.local_port,
            session_id=self._session_id,
            version=self._version,
        )

    def receive(self, data: bytes, addr: Addr, arrived: float | None = None) -> list[str]:
        """Handle one datagram (which came at `arrived`, if told: the jitter buffer hands
        it on with the frame); returns DTMF digits that it completed (usually none)."""
        neg = self.negotiated
        if neg is None or is_rtcp(data):
            self.ignored += 1
            return []
        try:
            pkt = parse_rtp(data)
        except RtpError:
            self.ignored += 1
            return []
        wanted = (neg.codec.payload_type, neg.dtmf_payload_type, COMFORT_NOISE_PT)
        if pkt.payload_type not in wanted:
            self.ignored += 1
            return []
        if not self._from_source(addr, pkt.ssrc, (neg.remote_host, neg.remote_port)):
            self.unlatched += 1
            if self.unlatched == 1 and self._source is not None:
                log.warning("RTP from %s:%s (ssrc %08x) dropped: the call's media comes from "
                            "%s:%s (more such packets are counted, not logged)", addr[0],
                            addr[1], pkt.ssrc, *self._source[0])
            return []
        if pkt.payload_type == neg.dtmf_payload_type:
            self.jitter.push(pkt, payload=b"", arrived=arrived)  # a slot of silence, not a loss
            try:
                digit = self.dtmf.feed(pkt)
            except RtpError:
                self.ignored += 1
                return []
            return [digit] if digit else []
        if pkt.payload_type == neg.codec.payload_type:
            self.jitter.push(pkt, arrived=arrived)
        return []

    def _from_source(self, addr: Addr, ssrc: int, sdp_addr: Addr) -> bool:
        """Is a valid packet from `addr` with `ssrc` the caller's (latching as the module
        says)? False: drop it."""
        source = self._source
        if source is not None and addr == source[0]:
            if ssrc != source[1]:
                log.info("RTP from %s:%s: new stream (ssrc %08x)", addr[0], addr[1], ssrc)
                self._source = (addr, ssrc)
            self._quiet = 0
            self._candidate, self._candidate_run = None, 0
            return True
        if source is not None and addr != sdp_addr:
            key = (addr, ssrc)
            if key != self._candidate:
                self._candidate, self._candidate_run = key, 0
            self._candidate_run += 1
            if self._candidate_run < LATCH_BURST or self._quiet < LATCH_QUIET_POPS:
                return False
        if source is not None:
            log.info("RTP source moved to %s:%s (ssrc %08x)%s", addr[0], addr[1], ssrc,
                     " (the SDP address)" if addr == sdp_addr else
                     f" after {self._candidate_run} packets in a row")
        self._source = (addr, ssrc)
        self.remote_addr = addr
        self._quiet = 0
        self._candidate, self._candidate_run = None, 0
        return True

    def pop_frame(self) -> bytes | Lost | None:
        """This tick's codec payload, `LOST` (conceal one frame) or None (play silence)."""
        self._quiet += 1
        frame = self.jitter.pop()
        return None if frame == b"" else frame

    def send_digits(self, digits: str) -> None:
        """Queue RFC 4733 key presses; they go out in place of audio, one packet a tick."""
        for d in digits:
            self._digits_waiting.append(d)

    @property
    def dtmf_pending(self) -> bool:
        """Key presses queued or under way (packets or their silent ticks still to send)."""
        return bool(self._dtmf_out or self._digits_waiting)

    def next_packet(self, payload: bytes | None) -> tuple[bytes, Addr] | None:
        """The datagram for this tick (audio `payload`, or None for silence) and its target."""
        neg, sender, target = self.negotiated, self.sender, self.remote_addr
        if neg is None or sender is None or target is None:
            return None
        if not self._dtmf_out and self._digits_waiting and neg.dtmf_payload_type is not None:
            digit = self._digits_waiting.popleft()
            # dtmf_packets moves the audio timestamp past the ticks its packets take;
            # two silent ticks (None) follow so that key presses stay apart
            self._dtmf_out.extend(
                dtmf_packets(sender, digit, neg.dtmf_payload_type, duration_ms=self.dtmf_ms)
            )
            self._dtmf_out.extend([None, None])
        if self._dtmf_out:
            data = self._dtmf_out.popleft()
            if data is None:
                sender.skip(sender.samples_per_frame)
                return None
            return (data, target) if not neg.on_hold else None
        if payload is None or neg.on_hold:
            sender.skip(sender.samples_per_frame)
            return None
        return sender.packet(payload), target
