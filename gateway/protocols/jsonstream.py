"""The common shape of the JSON-over-WebSocket media streams (Twilio, Telnyx, Plivo, Exotel).

Each of them sends JSON text messages with an `event` name and base64 audio. This base class
holds the sequence rules (nothing but `connected` before `start`, one `start`, nothing after
`stop`), the size limit, and the checks on outbound commands; a provider module supplies
`_handle` (one parsed message to events) and `_render` (one command to messages).
"""

from __future__ import annotations

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

    # ------------------------------------------------------------ inbound

    def receive_text(self, text: str) -> list[Event]:
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

    def _handle(self, event: str, msg: dict[str, Any]) -> list[Event]:
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

    def _audio(self, media: dict[str, Any], where: str) -> list[Event]:
        """`media.track` filter, base64 payload, whole samples."""
        wire = self._require_started(where)
        track = media.get("track")
        if track is not None and track not in ("inbound", "inbound_track"):
            return [Ignored(f"{where}: audio of track {show(track)}")]
        payload = decode_b64(media.get("payload"), where)
        if not payload:
            return [Ignored(f"{where}: empty audio")]
        if len(payload) % wire.bytes_per_sample:
            raise ProtocolError(f"{where}: {len(payload)} bytes is not whole 16-bit samples")
        return [AudioIn(payload)]

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
