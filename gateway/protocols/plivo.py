"""Plivo audio streams (bidirectional `<Stream>`), sans-I/O, and the answer XML webhook
(`PLIVO`).

Facts from https://www.plivo.com/docs/voice/audio-streaming/audio-streaming (Stream Event
Protocol) and https://docs.plivo.com/docs/voice/xml/audiostream :
- Plivo sends `start` first (no `connected`): {sequenceNumber, start: {callId, streamId,
  accountId, tracks, mediaFormat: {encoding "audio/x-mulaw" | "audio/x-l16", sampleRate}},
  extra_headers "k=v;k2=v2"}; `media` {streamId, media: {track, timestamp, chunk, payload}};
  `dtmf` {streamId, dtmf: {digit}}; `playedStream` {streamId, name} once the audio before
  our `checkpoint` has played (an older support article calls it `played`); `clearedAudio`
  {streamId} after our `clearAudio`. The end of the call is the socket closing; `stop` is
  not documented but accepted.
- We send `playAudio` {event, media: {contentType "audio/x-mulaw" | "audio/x-l16",
  sampleRate, payload}}, `checkpoint` {event, streamId, name}, `clearAudio` {event,
  streamId}.
- `<Stream>` attributes: bidirectional, audioTrack, streamTimeout, statusCallbackUrl,
  contentType ("audio/x-mulaw;rate=8000", "audio/x-l16;rate=8000|16000"), extraHeaders
  ("k=v,k2=v2", [A-Za-z0-9] only, at most 512 bytes), keepCallAlive; the WebSocket URL is the
  element's text. Byte order of audio/x-l16 is not stated; little-endian is assumed here.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from typing import Any

from gateway.protocols.common import (
    CallStarted,
    ClearAudio,
    Cleared,
    Command,
    DtmfIn,
    Event,
    Ignored,
    MarkPlayed,
    ProtocolError,
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
    xml_document,
)
from gateway.protocols.jsonstream import JsonMediaStream
from gateway.protocols.provider_signatures import validate_plivo_v3
from gateway.protocols.webhooks import (
    XML,
    StreamOffer,
    StreamProvider,
    Webhook,
    WebhookAnswer,
    WebhookRequest,
)

__all__ = ["PLIVO", "PlivoProtocol", "plivo_xml"]

_CODECS = {"audio/x-mulaw": "pcmu", "audio/x-l16": "l16"}
_CONTENT_TYPES = {"pcmu": "audio/x-mulaw", "l16": "audio/x-l16"}


class PlivoProtocol(JsonMediaStream):
    name = "plivo"

    def _handle(self, event: str, msg: dict[str, Any]) -> bytes | list[Event]:
        if event == "media":
            self._require_started(event)
            self._check_stream(msg, "streamId")
            return self._audio(get_obj(msg, "media", "plivo media"), "plivo media")
        if event == "start":
            return self._started(_parse_start(msg))
        if event == "dtmf":
            self._require_started(event)
            dtmf = get_obj(msg, "dtmf", "plivo dtmf")
            return [DtmfIn(check_digit(dtmf.get("digit"), "plivo dtmf"))]
        if event in ("playedStream", "played"):
            self._require_started(event)
            self._check_stream(msg, "streamId")
            return [MarkPlayed(get_str(msg, "name", "plivo playedStream"))]
        if event == "clearedAudio":
            self._require_started(event)
            return [Cleared()]
        if event == "stop":
            return self._ended("stop")
        return [Ignored(f"plivo: event {show(event)}")]

    def _render(self, cmd: Command) -> list[str | bytes]:
        if isinstance(cmd, SendAudio):
            assert self.wire is not None
            media = (("contentType", _CONTENT_TYPES[self.wire.encoding]),
                     ("sampleRate", self.wire.sample_rate))
            return [media_json((("event", "playAudio"),), "media", media, bytes(cmd.payload))]
        if isinstance(cmd, SendMark):
            return [dumps({"event": "checkpoint", "streamId": self.stream_id, "name": cmd.name})]
        if isinstance(cmd, ClearAudio):
            return [dumps({"event": "clearAudio", "streamId": self.stream_id})]
        return []  # Hangup: close the socket; with keepCallAlive and no more XML the call ends


def _parse_start(msg: dict[str, Any]) -> CallStarted:
    start = get_obj(msg, "start", "plivo start")
    stream_id = get_str(start, "streamId", "plivo start")
    call_id = get_str(start, "callId", "plivo start")
    fmt = get_obj(start, "mediaFormat", "plivo start")
    encoding = fmt.get("encoding")
    codec = _CODECS.get(encoding.split(";")[0].strip()) if isinstance(encoding, str) else None
    if codec is None:
        raise ProtocolError(f"plivo start: unsupported encoding {show(encoding)}")
    rate = parse_rate(fmt.get("sampleRate", 8000), (8000, 16000), "plivo start")
    headers = msg.get("extra_headers", start.get("extra_headers"))
    return CallStarted(
        call_id=call_id,
        stream_id=stream_id,
        wire=WireFormat(codec, rate),  # type: ignore[arg-type]
        params=_parse_extra_headers(headers),
        from_number=opt_str(start, "from"),
        to_number=opt_str(start, "to"),
    )


def _parse_extra_headers(value: Any) -> dict[str, str]:
    """'k=v;k2=v2' (or comma separated) to a dict; a JSON object is taken as is."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        return {str(k): opt_str(value, k) for k in value}
    if not isinstance(value, str):
        raise ProtocolError("plivo start: extra_headers must be a string")
    out: dict[str, str] = {}
    for part in re.split(r"[;,]", value):
        key, sep, val = part.partition("=")
        if key.strip():
            out[key.strip()] = val.strip() if sep else ""
    return out


_HEADER_TOKEN = re.compile(r"[A-Za-z0-9]+")


def plivo_xml(
    stream_url: str,
    *,
    content_type: str = "audio/x-mulaw;rate=8000",
    extra_headers: Mapping[str, str] | None = None,
    stream_timeout: int | None = None,
) -> str:
    """Plivo answer XML: a bidirectional stream that keeps the call alive until it closes."""
    if content_type not in (
        "audio/x-mulaw;rate=8000",
        "audio/x-l16;rate=8000",
        "audio/x-l16;rate=16000",
    ):
        raise ValueError(f"unsupported Plivo contentType {show(content_type)}")
    attrs = {"bidirectional": "true", "keepCallAlive": "true", "contentType": content_type}
    if stream_timeout is not None:
        if stream_timeout <= 0:
            raise ValueError("stream_timeout must be a positive number of seconds")
        attrs["streamTimeout"] = str(int(stream_timeout))
    if extra_headers:
        for key, value in extra_headers.items():
            if not _HEADER_TOKEN.fullmatch(key) or not _HEADER_TOKEN.fullmatch(value):
                raise ValueError(
                    f"Plivo extraHeaders allow only [A-Za-z0-9] keys and values: {key}={value}"
                )
        joined = ",".join(f"{k}={v}" for k, v in extra_headers.items())
        if len(joined) > 512:
            raise ValueError("Plivo extraHeaders are limited to 512 bytes")
        attrs["extraHeaders"] = joined
    response = ET.Element("Response")
    ET.SubElement(response, "Stream", attrs).text = stream_url
    return xml_document(response)


def _check(auth_token: str, hook: WebhookRequest) -> str | None:
    """`X-Plivo-Signature-V3` over the URL, a POST's form and the nonce."""
    form = hook.form if hook.method == "POST" else None
    if validate_plivo_v3(auth_token, hook.method, hook.url, form,
                         hook.headers.get("X-Plivo-Signature-V3-Nonce"),
                         hook.headers.get("X-Plivo-Signature-V3")):
        return None
    return "invalid or missing X-Plivo-Signature-V3"


def _answer(hook: WebhookRequest, stream: StreamOffer) -> WebhookAnswer:
    return WebhookAnswer(plivo_xml(stream.with_token()), XML)


PLIVO = StreamProvider(PlivoProtocol, "plivo_auth_token", _check, "form",
                       (Webhook("*", "answer", _answer),))
