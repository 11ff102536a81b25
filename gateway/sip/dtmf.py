"""RFC 4733 telephone-events (DTMF over RTP), sans-I/O: encode a key press, decode digits.

A key press is one event: packets that share the timestamp of the event's start,
the first with the marker bit, each carrying the duration so far, and the final one
with the end bit sent three times for loss tolerance. `dtmf_packets` builds that
sequence on an `RtpSender` (same SSRC and sequence space as the audio);
`DtmfDecoder` turns the incoming packets into each digit exactly once.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from gateway.sip.rtp import RtpError, RtpPacket, RtpSender
from media.frames import FRAME_MS
from runtime.dtmf import DTMF_KEYS

__all__ = ["DIGITS", "DtmfDecoder", "TelephoneEvent", "dtmf_packets", "parse_event"]

DIGITS = DTMF_KEYS  # event codes 0-15 (16 is flash)
_EVENT = struct.Struct("!BBH")


@dataclass(frozen=True)
class TelephoneEvent:
    event: int
    end: bool
    volume: int
    duration: int

    @property
    def digit(self) -> str | None:
        if self.event < len(DIGITS):
            return DIGITS[self.event]
        return "!" if self.event == 16 else None  # '!' is hook flash

    def to_bytes(self) -> bytes:
        return _EVENT.pack(
            self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration & 0xFFFF
        )


def parse_event(payload: bytes) -> TelephoneEvent:
    if len(payload) < 4:
        raise RtpError(f"telephone-event payload too short ({len(payload)} bytes)")
    event, flags, duration = _EVENT.unpack_from(payload)
    return TelephoneEvent(event, bool(flags & 0x80), flags & 0x3F, duration)


def _event_code(digit: str) -> int:
    if digit == "!":
        return 16
    code = DIGITS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


def dtmf_packets(
    sender: RtpSender,
    digit: str,
    payload_type: int,
    *,
    duration_ms: int = 100,
    volume: int = 10,
    packet_ms: int = FRAME_MS,
) -> list[bytes]:
    """The packets of one key press, to send one per `packet_ms` tick in place of audio.

    The audio timestamp of `sender` moves past the event and its next audio packet
    gets the marker bit."""
    code = _event_code(digit)
    step = sender.samples_per_frame * packet_ms // FRAME_MS
    updates = max(1, -(-duration_ms // packet_ms))
    total = min(updates * step, 0xFFFF)
    start = sender.timestamp
    packets: list[bytes] = []
    durations = [min((i + 1) * step, total) for i in range(updates - 1)] + [total] * 3
    for i, duration in enumerate(durations):
        end = i >= updates - 1
        pkt = RtpPacket(
            payload_type=payload_type,
            sequence=sender.next_sequence(),
            timestamp=start,
            ssrc=sender.ssrc,
            payload=TelephoneEvent(code, end, volume, duration).to_bytes(),
            marker=i == 0,
        )
        packets.append(pkt.to_bytes())
    sender.timestamp = (start + len(packets) * step) & 0xFFFFFFFF
    sender.start_talkspurt()
    return packets


class DtmfDecoder:
    """Report each key press once, however many (redundant, reordered) packets it has.

    An event is known by its SSRC and timestamp; packets of an event already
    reported, or older than it, are ignored."""

    def __init__(self) -> None:
        self._last: tuple[int, int] | None = None

    def feed(self, packet: RtpPacket) -> str | None:
        """The digit when `packet` starts a new event, else None. Raises `RtpError` if short."""
        event = parse_event(packet.payload)
        if self._last is not None:
            ssrc, ts = self._last
            if ssrc == packet.ssrc and ((packet.timestamp - ts) & 0xFFFFFFFF) >= 0x80000000:
                return None  # an older event's late packet
            if (ssrc, ts) == (packet.ssrc, packet.timestamp):
                return None
        self._last = (packet.ssrc, packet.timestamp)
        return event.digit
