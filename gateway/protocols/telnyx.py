"""Telnyx media streaming over WebSocket, sans-I/O, and its TeXML answer webhook (`TELNYX`).

Facts from https://developers.telnyx.com/api-reference/websockets/stream-call-media-over-websocket
(AsyncAPI "Stream call media over WebSocket"):
- Telnyx sends `connected` {version}, then `start` {sequence_number, stream_id, start:
  {call_control_id, call_session_id, from, to, client_state, custom_parameters, media_format:
  {encoding "PCMU", sample_rate 8000, channels 1}}}, `media` {stream_id, media: {track, chunk,
  timestamp, payload (base64 RTP payload without headers)}}, `dtmf` {dtmf: {digit}}, `mark`
  {mark: {name}} when the media before our mark finished playing (clear also returns queued
  marks), `error` and `stop`. Frame order is not guaranteed (chunk/timestamp carry order).
- With bidirectional RTP mode we may send `media` {media: {payload}} (PCMU, PCMA, G722, OPUS,
  AMR-WB, L16; 20 ms to 30 s per message), `mark` {mark: {name}} and `clear`.
- L16 as an RTP payload is network byte order (RFC 3551 section 4.5.11), hence `l16be`.
- Rates: PCMU and PCMA at 8000 Hz, L16 at 16000 Hz; a `start` naming any other is refused.
- Telnyx sets the stream up through Call Control (`stream_url`, `stream_bidirectional_mode:
  "rtp"`) or TeXML `<Connect><Stream url bidirectionalMode="rtp" bidirectionalCodec
  bidirectionalSamplingRate>` (https://developers.telnyx.com/docs/voice/programmable-voice/
  texml-verbs/stream). Hanging up is a Call Control action; closing the socket ends the
  `<Connect>`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

from gateway.protocols.common import (
    CallStarted,
    ClearAudio,
    Command,
    Connected,
    DtmfIn,
    Event,
    Ignored,
    MarkPlayed,
    ProtocolError,
    ProviderError,
    SendAudio,
    SendMark,
    WireFormat,
    check_digit,
    dumps,
    get_obj,
    get_str,
    media_json,
    opt_str,
    parse_rate,
    show,
    str_params,
    xml_document,
)
from gateway.protocols.jsonstream import JsonMediaStream
from gateway.protocols.provider_signatures import verify_telnyx_signature
from gateway.protocols.webhooks import (
    XML,
    StreamOffer,
    StreamProvider,
    Webhook,
    WebhookAnswer,
    WebhookRequest,
)

__all__ = ["TELNYX", "TelnyxProtocol", "telnyx_texml"]

_CODECS = {"PCMU": "pcmu", "PCMA": "pcma", "L16": "l16be"}
# the rates Telnyx streams each codec at: G.711 is 8 kHz, its L16 16 kHz
_RATES = {"pcmu": (8000,), "pcma": (8000,), "l16be": (16000,)}


class TelnyxProtocol(JsonMediaStream):
    name = "telnyx"

    def _handle(self, event: str, msg: dict[str, Any]) -> bytes | list[Event]:
        if event == "media":
            self._require_started(event)
            self._check_stream(msg, "stream_id")
            return self._audio(get_obj(msg, "media", "telnyx media"), "telnyx media")
        if event == "connected":
            if self.started:
                raise ProtocolError("telnyx: 'connected' after 'start'")
            return [Connected(opt_str(msg, "version"))]
        if event == "start":
            return self._started(_parse_start(msg))
        if event == "dtmf":
            self._require_started(event)
            dtmf = get_obj(msg, "dtmf", "telnyx dtmf")
            return [DtmfIn(check_digit(dtmf.get("digit"), "telnyx dtmf"))]
        if event == "mark":
            self._require_started(event)
            mark = get_obj(msg, "mark", "telnyx mark")
            return [MarkPlayed(get_str(mark, "name", "telnyx mark"))]
        if event == "error":
            payload = msg.get("payload")
            detail = payload if isinstance(payload, dict) else {}
            text = " ".join(
                s for s in (opt_str(detail, k) for k in ("code", "title", "detail")) if s
            )
            return [ProviderError(f"telnyx: {text or 'stream error'}")]
        if event == "stop":
            self._check_stream(msg, "stream_id")
            return self._ended("stop")
        return [Ignored(f"telnyx: event {show(event)}")]

    def _render(self, cmd: Command) -> list[str | bytes]:
        if isinstance(cmd, SendAudio):
            return [media_json((("event", "media"),), "media", (), bytes(cmd.payload))]
        if isinstance(cmd, SendMark):
            return [dumps({"event": "mark", "mark": {"name": cmd.name}})]
        if isinstance(cmd, ClearAudio):
            return [dumps({"event": "clear"})]
        return []  # Hangup: close the socket (or use the Call Control hangup action)


def _parse_start(msg: dict[str, Any]) -> CallStarted:
    start = get_obj(msg, "start", "telnyx start")
    stream_id = msg.get("stream_id", start.get("stream_id"))
    if not isinstance(stream_id, str):
        raise ProtocolError("telnyx start: missing string 'stream_id'")
    call_id = get_str(start, "call_control_id", "telnyx start")
    fmt = start.get("media_format")
    wire = WireFormat("pcmu", 8000)
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise ProtocolError("telnyx start: media_format must be an object")
        encoding = fmt.get("encoding", "PCMU")
        codec = _CODECS.get(encoding.upper()) if isinstance(encoding, str) else None
        if codec is None:
            raise ProtocolError(f"telnyx start: unsupported encoding {show(encoding)}")
        rate = parse_rate(fmt.get("sample_rate", _RATES[codec][0]), _RATES[codec],
                          "telnyx start")
        channels = fmt.get("channels", 1)
        if channels not in (1, "1"):
            raise ProtocolError(f"telnyx start: {show(channels)} channels, only mono is supported")
        wire = WireFormat(codec, rate)  # type: ignore[arg-type]
    return CallStarted(
        call_id=call_id,
        stream_id=stream_id,
        wire=wire,
        params=str_params(start.get("custom_parameters"), "telnyx start"),
        from_number=opt_str(start, "from"),
        to_number=opt_str(start, "to"),
    )


def telnyx_texml(stream_url: str, *, codec: str = "PCMU", sample_rate: int = 8000) -> str:
    """TeXML answering a call with a bidirectional RTP stream to `stream_url`."""
    if codec.upper() not in _CODECS:
        raise ValueError(f"codec must be one of {', '.join(_CODECS)}, got {codec!r}")
    response = ET.Element("Response")
    ET.SubElement(
        ET.SubElement(response, "Connect"),
        "Stream",
        url=stream_url,
        bidirectionalMode="rtp",
        bidirectionalCodec=codec.upper(),
        bidirectionalSamplingRate=str(sample_rate),
    )
    return xml_document(response)


def _check(public_key: str, hook: WebhookRequest) -> str | None:
    """The Ed25519 signature over the timestamp and the raw body."""
    if verify_telnyx_signature(public_key, hook.headers.get("telnyx-signature-ed25519"),
                               hook.headers.get("telnyx-timestamp"), hook.body, hook.received):
        return None
    return "invalid or missing Telnyx signature"


def _voice(hook: WebhookRequest, stream: StreamOffer) -> WebhookAnswer:
    return WebhookAnswer(telnyx_texml(stream.with_token()), XML)


TELNYX = StreamProvider(TelnyxProtocol, "telnyx_public_key", _check, "body",
                        (Webhook("*", "voice", _voice),))
