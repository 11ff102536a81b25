"""The common shape of the JSON-over-WebSocket media streams (Twilio, Telnyx, Plivo, Exotel).

Each of them sends JSON text messages with an `event` name and base64 audio. This base class
holds the sequence rules (nothing but `connected` before `start`, one `start`, nothing after
`stop`), the size limit, and the checks on outbound commands; a provider module supplies
`_handle` (one parsed message to events) and `_render` (one command to messages).
"""

from __future__ import annotations

import binascii
from typing import Any, ClassVar

from gateway.protocols.common import (
    DEFAULT_MAX_MESSAGE,
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Command,
    CommandError,
    Event,
    Hangup,
    Ignored,
    ProtocolError,
    SendAudio,
    SendMark,
    WireFormat,
    decode_b64,
    parse_json_object,
    show,
)
from media.frames import FRAME_MS


class JsonMediaStream:
    """Sans-I/O state of one provider media stream. Not thread-safe; one per connection."""

    name: ClassVar[str] = "json"
    supports_marks: ClassVar[bool] = True
    supports_clear: ClassVar[bool] = True

    def __init__(self, *, max_message: int = DEFAULT_MAX_MESSAGE) -> None:
        self.max_message = max_message
        self.started = False
        self.ended = False
        self.hung_up = False  # we ended the call: what still arrives is ignored, not an error
        self.call_id = ""
        self.stream_id = ""
        self.wire: WireFormat | None = None
        self._around: tuple[str, str, int] | None = None  # (`audio_text`)

    # ------------------------------------------------------------ inbound

    def receive_text(self, text: str) -> list[Event]:
        got = self.receive_audio(text)
        return [AudioIn(got)] if isinstance(got, bytes) else got

    def receive_audio(self, text: str) -> bytes | list[Event]:
        """`receive_text` for the I/O shell's hot path: caller audio comes back as its bare
        payload, with no event objects made for the 50 messages a second; anything else as
        events, as `receive_text` gives them."""
        if self.hung_up:
            return [Ignored(f"{self.name}: message after our hang-up")]
        msg = parse_json_object(text, self.max_message)
        event = msg.get("event")
        if not isinstance(event, str):
            raise ProtocolError(f"{self.name}: message has no string 'event'")
        if self.ended:
            raise ProtocolError(f"{self.name}: {show(event)} after the stream ended")
        return self._handle(event, msg)

    def receive_bytes(self, data: bytes) -> list[Event]:
        if self.hung_up:
            return [Ignored(f"{self.name}: message after our hang-up")]
        raise ProtocolError(f"{self.name}: binary message where JSON text is expected")

    def closed(self) -> list[Event]:
        """The connection went away. Gives `CallEnded` unless the stream already ended."""
        if self.ended:
            return []
        self.ended = True
        return [CallEnded("disconnected")]

    def _handle(self, event: str, msg: dict[str, Any]) -> bytes | list[Event]:
        """One parsed message: caller audio as its payload (`_audio`), the rest as events."""
        raise NotImplementedError

    # helpers for _handle

    def _require_started(self, event: str) -> WireFormat:
        if not self.started or self.wire is None:
            raise ProtocolError(f"{self.name}: {show(event)} before 'start'")
        return self.wire

    def _check_stream(self, msg: dict[str, Any], key: str) -> None:
        """If the message names a stream, it must be ours."""
        sid = msg.get(key)
        if sid is not None and sid != self.stream_id:
            raise ProtocolError(
                f"{self.name}: {key} {show(sid)} does not match {show(self.stream_id)}"
            )

    def _started(self, event: CallStarted) -> list[Event]:
        if self.started:
            raise ProtocolError(f"{self.name}: second 'start' on one stream")
        self.started = True
        self.call_id = event.call_id
        self.stream_id = event.stream_id
        self.wire = event.wire
        return [event]

    def _ended(self, reason: str) -> list[Event]:
        self._require_started("stop")
        self.ended = True
        return [CallEnded(reason)]

    def _audio(self, media: dict[str, Any], where: str) -> bytes | list[Event]:
        """`media.track` filter, base64 payload, whole samples: the payload, or why not."""
        wire = self._require_started(where)
        track = media.get("track")
        if track is not None and track not in ("inbound", "inbound_track"):
            return [Ignored(f"{where}: audio of track {show(track)}")]
        payload = decode_b64(media.get("payload"), where)
        if not payload:
            return [Ignored(f"{where}: empty audio")]
        if len(payload) % wire.bytes_per_sample:
            raise ProtocolError(f"{where}: {len(payload)} bytes is not whole 16-bit samples")
        return payload

    # ------------------------------------------------------------ outbound

    def send(self, cmd: Command) -> list[str | bytes]:
        """What to write to the socket for `cmd` (possibly nothing)."""
        if isinstance(cmd, Hangup):
            self.ended = self.hung_up = True
            return self._render(cmd)
        if not self.started or self.wire is None:
            raise CommandError(f"{self.name}: cannot send {type(cmd).__name__} before 'start'")
        if isinstance(cmd, SendAudio):
            check_audio(cmd.payload, self.wire, self.name)
        elif isinstance(cmd, SendMark):
            if not isinstance(cmd.name, str):
                raise CommandError(f"{self.name}: mark name must be a string")
        elif not isinstance(cmd, ClearAudio):
            raise CommandError(f"{self.name}: unknown command {show(cmd)}")
        return self._render(cmd)

    def audio_text(self, payload: bytes) -> str:
        """The message `send(SendAudio(payload))` gives, for the 50-a-second path: the text
        around the payload is rendered once per stream."""
        around = self._around_audio()
        if around is None or type(payload) is not bytes or not payload or len(payload) % around[2]:
            return self._one(self.send(SendAudio(payload)))  # (and its checks say why)
        return around[0] + binascii.b2a_base64(payload, newline=False).decode() + around[1]

    def _around_audio(self) -> tuple[str, str, int] | None:
        """The audio message's text before and after its payload, and the bytes of a frame;
        None before 'start', or if the provider's message is not built that way."""
        if self._around is None and self.started and self.wire is not None:
            text = self._one(self._render(SendAudio(b"")))
            head, quote, tail = text.rpartition('"payload":""')
            if quote:
                self._around = (head + '"payload":"', '"' + tail,
                                self.wire.bytes_for_ms(FRAME_MS))
        return self._around

    @staticmethod
    def _one(messages: list[str | bytes]) -> str:
        (text,) = messages
        assert isinstance(text, str)
        return text

    def _render(self, cmd: Command) -> list[str | bytes]:
        raise NotImplementedError


def check_audio(payload: Any, wire: WireFormat, who: str) -> None:
    """Outbound audio must be bytes of whole 20 ms frames in the wire format."""
    if not isinstance(payload, bytes | bytearray | memoryview):
        raise CommandError(f"{who}: audio payload must be bytes")
    frame = wire.bytes_for_ms(FRAME_MS)
    if not len(payload) or len(payload) % frame:
        raise CommandError(
            f"{who}: audio of {len(payload)} bytes is not whole 20 ms frames of {frame} bytes "
            f"({wire.encoding} {wire.sample_rate} Hz)"
        )
