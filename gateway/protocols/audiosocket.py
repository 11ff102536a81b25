"""Asterisk AudioSocket over TCP, sans-I/O: a stream parser and an encoder.

Facts from https://docs.asterisk.org/Configuration/Channel-Drivers/AudioSocket/ (and the
protocol's home, https://github.com/CyCoreSystems/audiosocket):
- Every message is a 3-byte header, kind (1 byte) and payload length (2 bytes, unsigned,
  big-endian), then the payload. Hang-up is 0x00 0x00 0x00.
- Kinds: 0x00 terminate (closing the socket is also enough); 0x01 UUID of the call (16 raw
  bytes); 0x03 DTMF digit (1 ASCII byte); 0x10 signed linear 16-bit little-endian mono PCM at
  8 kHz; 0x11..0x18 the same at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz (newer Asterisk; an
  earlier draft numbered 16 kHz 0x11, the published list says 0x12); 0xff error, payload an
  optional code (Asterisk: 0x01 caller hung up, 0x02 frame forwarding error, 0x04 memory).
- Asterisk sends the UUID first; audio we send back is played to the channel. There is no
  buffer to clear and no playback mark: the sender paces its audio.
"""

from __future__ import annotations

import uuid
from typing import ClassVar

from gateway.protocols.common import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Command,
    CommandError,
    DtmfIn,
    Event,
    Hangup,
    Ignored,
    ProtocolError,
    SendAudio,
    SendMark,
    WireFormat,
    check_digit,
    show,
)
from gateway.protocols.jsonstream import check_audio
from media.frames import FRAME_MS

__all__ = [
    "AUDIO_KINDS",
    "KIND_DTMF",
    "KIND_ERROR",
    "KIND_HANGUP",
    "KIND_UUID",
    "AudioSocketProtocol",
    "encode_message",
]

KIND_HANGUP = 0x00
KIND_UUID = 0x01
KIND_DTMF = 0x03
KIND_ERROR = 0xFF
AUDIO_KINDS = {
    0x10: 8000,
    0x11: 12000,
    0x12: 16000,
    0x13: 24000,
    0x14: 32000,
    0x15: 44100,
    0x16: 48000,
    0x17: 96000,
    0x18: 192000,
}
_KIND_FOR_RATE = {rate: kind for kind, rate in AUDIO_KINDS.items()}
_ASTERISK_ERRORS = {0x01: "caller hung up", 0x02: "frame forwarding error", 0x04: "memory error"}
_HEADER = 3
_MAX_PAYLOAD = 0xFFFF


class AudioSocketProtocol:
    """One AudioSocket TCP connection. `feed` takes bytes as they arrive, in any pieces."""

    name: ClassVar[str] = "audiosocket"
    supports_marks: ClassVar[bool] = False
    supports_clear: ClassVar[bool] = False

    def __init__(self, *, sample_rate: int = 8000) -> None:
        if sample_rate not in _KIND_FOR_RATE:
            raise ValueError(f"AudioSocket has no audio kind for {sample_rate} Hz")
        self.wire = WireFormat("l16", sample_rate)
        self._audio_kind = _KIND_FOR_RATE[sample_rate]
        self._buf = bytearray()
        self.started = False
        self.ended = False
        self.hung_up = False  # we ended the call: what still arrives is ignored, not an error
        self.call_id = ""

    def feed(self, data: bytes) -> list[Event]:
        """Parse every complete message in `data` plus what was left over from before."""
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(f"audiosocket: expected bytes, got {type(data).__name__}")
        if self.hung_up:
            return [Ignored("audiosocket: data after our hang-up")] if data else []
        if self.ended:
            if data:
                raise ProtocolError("audiosocket: data after the call ended")
            return []
        self._buf += data
        events: list[Event] = []
        buf = self._buf
        pos = 0
        try:
            while len(buf) - pos >= _HEADER and not self.ended:
                kind = buf[pos]
                length = (buf[pos + 1] << 8) | buf[pos + 2]
                end = pos + _HEADER + length
                if end > len(buf):
                    break
                payload = bytes(buf[pos + _HEADER : end])
                pos = end
                events.append(self._message(kind, payload))
            if self.ended and pos < len(buf):
                raise ProtocolError("audiosocket: data after the call ended")
        finally:
            del buf[:pos]
        return events

    def closed(self) -> list[Event]:
        """The TCP connection closed; a half message left in the buffer is dropped."""
        if self.ended:
            return []
        self.ended = True
        return [CallEnded("disconnected")]

    def _message(self, kind: int, payload: bytes) -> Event:
        if kind == KIND_UUID:
            if self.started:
                raise ProtocolError("audiosocket: second UUID message")
            if len(payload) != 16:
                raise ProtocolError(f"audiosocket: UUID payload of {len(payload)} bytes, not 16")
            self.started = True
            self.call_id = str(uuid.UUID(bytes=payload))
            return CallStarted(call_id=self.call_id, stream_id=self.call_id, wire=self.wire)
        if kind == KIND_HANGUP:
            self.ended = True
            return CallEnded("hangup")
        if kind == KIND_ERROR:
            self.ended = True
            code = payload[0] if payload else None
            if code is None:
                return CallEnded("error")
            return CallEnded(f"error 0x{code:02x}: {_ASTERISK_ERRORS.get(code, 'unknown')}")
        if not self.started:
            raise ProtocolError(f"audiosocket: message kind 0x{kind:02x} before the UUID")
        if kind == self._audio_kind:
            if len(payload) % 2:
                raise ProtocolError(f"audiosocket: {len(payload)} bytes is not whole samples")
            return AudioIn(payload) if payload else Ignored("audiosocket: empty audio")
        if kind in AUDIO_KINDS:
            raise ProtocolError(
                f"audiosocket: audio at {AUDIO_KINDS[kind]} Hz on a call set up for "
                f"{self.wire.sample_rate} Hz"
            )
        if kind == KIND_DTMF:
            if len(payload) != 1:
                raise ProtocolError(f"audiosocket: DTMF payload of {len(payload)} bytes, not 1")
            return DtmfIn(check_digit(chr(payload[0]), "audiosocket dtmf"))
        return Ignored(f"audiosocket: message kind 0x{kind:02x}")

    def encode(self, cmd: Command) -> bytes:
        """Bytes to write for `cmd`: audio as one message per 20 ms frame; hang-up as 0x00.
        Clearing and marks have no AudioSocket message (b"")."""
        if isinstance(cmd, SendAudio):
            check_audio(cmd.payload, self.wire, self.name)
            frame = self.wire.bytes_for_ms(FRAME_MS)
            data = bytes(cmd.payload)
            head = bytes((self._audio_kind, frame >> 8, frame & 0xFF))
            return b"".join(head + data[i : i + frame] for i in range(0, len(data), frame))
        if isinstance(cmd, Hangup):
            self.ended = self.hung_up = True
            return bytes((KIND_HANGUP, 0, 0))
        if isinstance(cmd, ClearAudio | SendMark):
            return b""
        raise CommandError(f"audiosocket: unknown command {show(cmd)}")


def encode_message(kind: int, payload: bytes = b"") -> bytes:
    """One raw AudioSocket message (for tests and for a client side)."""
    if not 0 <= kind <= 0xFF:
        raise ValueError(f"kind {kind} is not one byte")
    if len(payload) > _MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {_MAX_PAYLOAD}")
    return bytes((kind, len(payload) >> 8, len(payload) & 0xFF)) + payload
