"""RTP packets (RFC 3550), sans-I/O: parse, build, and packetize outgoing audio.

`parse_rtp(bytes) -> RtpPacket` reads version, padding, extension, CSRCs, marker,
payload type, sequence number, timestamp and SSRC; `RtpPacket.to_bytes()` writes
them back. `is_rtcp` recognizes RTCP (packet types 200-204, RFC 5761) so a shared
port can ignore it. `RtpSender` stamps 20 ms codec payloads with consecutive
sequence numbers, a timestamp advancing by the frame's samples (both wrapping),
one SSRC, and the marker bit on the first packet of each talkspurt. Malformed input
raises `RtpError` (a `ValueError`).
"""

from __future__ import annotations

import secrets
import struct
from dataclasses import dataclass

__all__ = ["RtpError", "RtpPacket", "RtpSender", "is_rtcp", "parse_rtp"]

_HEADER = struct.Struct("!BBHII")
RTCP_TYPES = range(200, 205)


class RtpError(ValueError):
    """Malformed RTP."""


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrcs: tuple[int, ...] = ()
    extension: tuple[int, bytes] | None = None  # (profile id, data: a multiple of 4 bytes)
    padding: int = 0  # padding bytes that followed the payload

    def to_bytes(self) -> bytes:
        if not 0 <= self.payload_type < 128:
            raise RtpError(f"payload type {self.payload_type} out of range")
        if len(self.csrcs) > 15:
            raise RtpError("at most 15 CSRCs")
        b0 = 0x80 | len(self.csrcs)
        if self.padding:
            b0 |= 0x20
        if self.extension is not None:
            b0 |= 0x10
        b1 = self.payload_type | (0x80 if self.marker else 0)
        parts = [
            _HEADER.pack(
                b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc & 0xFFFFFFFF
            )
        ]
        if self.csrcs:
            parts.append(struct.pack(f"!{len(self.csrcs)}I", *self.csrcs))
        if self.extension is not None:
            profile, data = self.extension
            if len(data) % 4:
                raise RtpError("header extension data must be a multiple of 4 bytes")
            parts.append(struct.pack("!HH", profile & 0xFFFF, len(data) // 4) + data)
        parts.append(self.payload)
        if self.padding:
            if not 0 < self.padding < 256:
                raise RtpError("padding must be 1..255 bytes")
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """True for an RTCP packet (SR, RR, SDES, BYE, APP) sharing the port with RTP."""
    return len(data) >= 8 and data[0] >> 6 == 2 and data[1] in RTCP_TYPES


def parse_rtp(data: bytes) -> RtpPacket:
    if len(data) >= 2 and data[1] in RTCP_TYPES and data[0] >> 6 == 2:
        raise RtpError("this is RTCP, not RTP")
    if len(data) < 12:
        raise RtpError(f"RTP packet too short ({len(data)} bytes)")
    b0, b1, seq, ts, ssrc = _HEADER.unpack_from(data)
    if b0 >> 6 != 2:
        raise RtpError(f"RTP version {b0 >> 6}, want 2")
    offset = 12
    cc = b0 & 0x0F
    if len(data) < offset + 4 * cc:
        raise RtpError("truncated CSRC list")
    csrcs = struct.unpack_from(f"!{cc}I", data, offset) if cc else ()
    offset += 4 * cc
    extension = None
    if b0 & 0x10:
        if len(data) < offset + 4:
            raise RtpError("truncated header extension")
        profile, words = struct.unpack_from("!HH", data, offset)
        offset += 4
        if len(data) < offset + 4 * words:
            raise RtpError("truncated header extension data")
        extension = (profile, bytes(data[offset : offset + 4 * words]))
        offset += 4 * words
    end = len(data)
    padding = 0
    if b0 & 0x20:
        padding = data[-1]
        if padding == 0 or end - padding < offset:
            raise RtpError(f"bad padding length {padding}")
        end -= padding
    return RtpPacket(
        payload_type=b1 & 0x7F,
        sequence=seq,
        timestamp=ts,
        ssrc=ssrc,
        payload=bytes(data[offset:end]),
        marker=bool(b1 & 0x80),
        csrcs=tuple(csrcs),
        extension=extension,
        padding=padding,
    )


class RtpSender:
    """Packetize one outgoing stream: `packet(payload)` per 20 ms frame.

    Sequence number and timestamp start at random values unless given. After
    `start_talkspurt()` (and on the very first packet) the marker bit is set; call
    `skip(samples)` for frames not sent (silence) so the timestamp keeps real time."""

    def __init__(
        self,
        payload_type: int,
        *,
        ssrc: int | None = None,
        sequence: int | None = None,
        timestamp: int | None = None,
        samples_per_frame: int = 160,
    ) -> None:
        if not 0 <= payload_type < 128:
            raise ValueError(f"payload type {payload_type} out of range")
        self.payload_type = payload_type
        self.ssrc = secrets.randbits(32) if ssrc is None else ssrc & 0xFFFFFFFF
        self.sequence = secrets.randbits(16) if sequence is None else sequence & 0xFFFF
        self.timestamp = secrets.randbits(32) if timestamp is None else timestamp & 0xFFFFFFFF
        self.samples_per_frame = samples_per_frame
        self._marker = True
        self.packets_sent = 0
        self.octets_sent = 0

    def start_talkspurt(self) -> None:
        """The next packet begins a talkspurt (after silence or a DTMF event)."""
        self._marker = True

    def skip(self, samples: int) -> None:
        """Advance the timestamp over audio that is not sent."""
        self.timestamp = (self.timestamp + samples) & 0xFFFFFFFF
        self._marker = True

    def next_sequence(self) -> int:
        seq = self.sequence
        self.sequence = (self.sequence + 1) & 0xFFFF
        return seq

    def packet(self, payload: bytes, *, samples: int | None = None) -> bytes:
        """One RTP packet for one frame of encoded audio; advances seq and timestamp."""
        # the plain 12-byte header straight from the struct (no RtpPacket: a packet a frame)
        header = _HEADER.pack(0x80, self.payload_type | (0x80 if self._marker else 0),
                              self.next_sequence(), self.timestamp, self.ssrc)
        self._marker = False
        step = self.samples_per_frame if samples is None else samples
        self.timestamp = (self.timestamp + step) & 0xFFFFFFFF
        self.packets_sent += 1
        self.octets_sent += len(payload)
        return header + payload
