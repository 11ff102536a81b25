"""Vonage Voice API WebSockets, sans-I/O, and the NCCO answer and event webhooks (`VONAGE`).

Facts from https://developer.vonage.com/en/voice/voice-api/concepts/websockets and the NCCO
reference (https://developer.vonage.com/en/voice/voice-api/ncco-reference):
- The answer webhook returns an NCCO whose `connect` action has an endpoint {type
  "websocket", uri, "content-type": "audio/l16;rate=16000" (or 8000; 24000 is also seen),
  headers {...}}.
- Vonage's first message is text: {"event": "websocket:connected", "content-type": ...,
  plus the NCCO headers}. Then audio travels as binary messages of 16-bit signed
  little-endian mono PCM, 20 ms each (640 bytes at 16 kHz, 320 at 8 kHz), both ways.
- Other text messages from Vonage: `websocket:dtmf` {digit, duration}, `websocket:cleared`
  (after our {"action": "clear"}), `websocket:notify` {payload} (after our {"action":
  "notify", "payload": {...}}, once the audio queued before it has played).
- The call's end is the socket closing; there is no stop message.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from gateway.logtext import printable
from gateway.protocols.common import (
    DEFAULT_MAX_MESSAGE,
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Cleared,
    Command,
    CommandError,
    DtmfIn,
    Event,
    Hangup,
    Ignored,
    MarkPlayed,
    ProtocolError,
    SendAudio,
    SendMark,
    WireFormat,
    check_digit,
    dumps,
    get_str,
    parse_json_object,
    parse_rate,
    show,
    str_params,
)
from gateway.protocols.jsonstream import check_audio
from gateway.protocols.provider_signatures import verify_vonage_jwt
from gateway.protocols.webhooks import (
    StreamOffer,
    StreamProvider,
    Webhook,
    WebhookAnswer,
    WebhookRequest,
)
from media.frames import FRAME_MS

__all__ = ["VONAGE", "VonageProtocol", "vonage_ncco"]

log = logging.getLogger(__name__)

_RATES = (8000, 16000, 24000)
_CONTENT_TYPE = re.compile(r"\s*audio/l16\s*;\s*rate\s*=\s*(\d+)\s*", re.IGNORECASE)
_MARK_KEY = "mark"  # our key inside the notify payload


class VonageProtocol:
    name: ClassVar[str] = "vonage"
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

    def receive_text(self, text: str) -> list[Event]:
        if self.hung_up:
            return [Ignored("vonage: message after our hang-up")]
        msg = parse_json_object(text, self.max_message)
        event = msg.get("event")
        if not isinstance(event, str):
            raise ProtocolError("vonage: text message has no string 'event'")
        if self.ended:
            raise ProtocolError(f"vonage: {show(event)} after the call ended")
        if event == "websocket:connected":
            return [self._connected(msg)]
        if not self.started:
            raise ProtocolError(f"vonage: {show(event)} before 'websocket:connected'")
        if event == "websocket:dtmf":
            digit = msg.get("digit")
            if digit is None and isinstance(msg.get("dtmf"), dict):
                digit = msg["dtmf"].get("digit")  # seen in some integrations
            return [DtmfIn(check_digit(digit, "vonage websocket:dtmf"))]
        if event == "websocket:notify":
            payload = msg.get("payload")
            if isinstance(payload, dict) and isinstance(payload.get(_MARK_KEY), str):
                return [MarkPlayed(payload[_MARK_KEY])]
            return [Ignored("vonage: notify without our mark")]
        if event == "websocket:cleared":
            return [Cleared()]
        return [Ignored(f"vonage: event {show(event)}")]

    def receive_bytes(self, data: bytes) -> list[Event]:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ProtocolError(f"vonage: expected a binary message, got {type(data).__name__}")
        if self.hung_up:
            return [Ignored("vonage: audio after our hang-up")]
        if self.ended:
            raise ProtocolError("vonage: audio after the call ended")
        if not self.started:
            raise ProtocolError("vonage: audio before 'websocket:connected'")
        if len(data) > self.max_message:
            raise ProtocolError(f"vonage: binary message of {len(data)} bytes exceeds the limit")
        if len(data) % 2:
            raise ProtocolError(f"vonage: {len(data)} bytes is not whole 16-bit samples")
        if not data:
            return [Ignored("vonage: empty audio")]
        return [AudioIn(bytes(data))]

    def closed(self) -> list[Event]:
        if self.ended:
            return []
        self.ended = True
        return [CallEnded("disconnected")]

    def send(self, cmd: Command) -> list[str | bytes]:
        if isinstance(cmd, Hangup):
            self.ended = self.hung_up = True
            return []  # close the socket
        if not self.started or self.wire is None:
            raise CommandError(f"vonage: cannot send {type(cmd).__name__} before connected")
        if isinstance(cmd, SendAudio):
            check_audio(cmd.payload, self.wire, self.name)
            frame = self.wire.bytes_for_ms(FRAME_MS)
            data = bytes(cmd.payload)
            return [data[i : i + frame] for i in range(0, len(data), frame)]
        if isinstance(cmd, SendMark):
            if not isinstance(cmd.name, str):
                raise CommandError("vonage: mark name must be a string")
            return [dumps({"action": "notify", "payload": {_MARK_KEY: cmd.name}})]
        if isinstance(cmd, ClearAudio):
            return [dumps({"action": "clear"})]
        raise CommandError(f"vonage: unknown command {show(cmd)}")

    def _connected(self, msg: dict[str, Any]) -> CallStarted:
        if self.started:
            raise ProtocolError("vonage: second 'websocket:connected'")
        content_type = get_str(msg, "content-type", "vonage websocket:connected")
        match = _CONTENT_TYPE.fullmatch(content_type)
        if match is None:
            raise ProtocolError(f"vonage: unsupported content-type {show(content_type)}")
        rate = parse_rate(match.group(1), _RATES, "vonage websocket:connected")
        params = str_params({k: v for k, v in msg.items() if k not in ("event", "content-type")},
                            "vonage websocket:connected")
        call_id = params.get("uuid") or params.get("call_id") or ""
        event = CallStarted(
            call_id=call_id,
            stream_id=call_id,
            wire=WireFormat("l16", rate),
            params=params,
            from_number=params.get("from", ""),
            to_number=params.get("to", ""),
        )
        self.started = True
        self.call_id = call_id
        self.stream_id = call_id
        self.wire = event.wire
        return event


def vonage_ncco(
    stream_url: str,
    *,
    sample_rate: int = 16000,
    headers: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The NCCO (a JSON list) connecting the call to our WebSocket. Put the call's `uuid`,
    `from` and `to` in `headers`: they come back in `websocket:connected`."""
    if sample_rate not in _RATES:
        raise ValueError(f"Vonage sample rate must be one of {_RATES}, got {sample_rate!r}")
    endpoint: dict[str, Any] = {
        "type": "websocket",
        "uri": stream_url,
        "content-type": f"audio/l16;rate={sample_rate}",
    }
    if headers:
        endpoint["headers"] = {str(k): str(v) for k, v in headers.items()}
    return [{"action": "connect", "endpoint": [endpoint]}]


def _check(secret: str, hook: WebhookRequest) -> str | None:
    """The signed JWT in `Authorization: Bearer`, with the body's hash."""
    if verify_vonage_jwt(secret, hook.headers.get("Authorization"), hook.body,
                         hook.received) is None:
        return "invalid or missing Vonage signed JWT"
    return None


def _json_fields(body: bytes) -> dict[str, str]:
    """A JSON object body's top-level text and number fields (Vonage POSTs JSON)."""
    try:
        data = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)}


def _answer(hook: WebhookRequest, stream: StreamOffer) -> WebhookAnswer:
    """The NCCO to the stream, with the call's `uuid`, `from` and `to` as headers."""
    form = dict(hook.form)
    if hook.method == "POST" and not form and hook.body:
        form = _json_fields(hook.body)
    headers = {k: form[k] for k in ("uuid", "from", "to") if k in form}
    return WebhookAnswer.json(vonage_ncco(stream.with_token(), headers=headers))


def _event(hook: WebhookRequest, stream: StreamOffer) -> WebhookAnswer:
    """The call's events, logged (a line break in them must not forge a log line)."""
    log.info("vonage event: %s", printable(hook.body.decode("utf-8"), 500))
    return WebhookAnswer.json({})


VONAGE = StreamProvider(VonageProtocol, "vonage_signature_secret", _check, "body",
                        (Webhook("*", "answer", _answer, reads_body=True, reads_form=True),
                         Webhook("*", "event", _event, offers_stream=False, reads_body=True)))
