"""Twilio bidirectional Media Streams (`<Connect><Stream>`), sans-I/O, and its TwiML answer
webhook (`TWILIO`).

Facts from https://www.twilio.com/docs/voice/media-streams/websocket-messages :
- Twilio sends JSON text messages: `connected` {protocol, version}; `start` {sequenceNumber,
  streamSid, start: {streamSid, accountSid, callSid, tracks, customParameters, mediaFormat:
  {encoding "audio/x-mulaw", sampleRate 8000, channels 1}}}; `media` {streamSid, media:
  {track, chunk, timestamp, payload (base64 mu-law)}}; `dtmf` {streamSid, dtmf: {track,
  digit}}; `mark` {streamSid, mark: {name}} once the audio before our mark has played (or was
  cleared); `stop` {streamSid, stop: {accountSid, callSid}}.
- We may send `media` {event, streamSid, media: {payload}}, `mark` {event, streamSid, mark:
  {name}} and `clear` {event, streamSid}; binary frames are rejected by Twilio (error 31950,
  https://www.twilio.com/docs/api/errors/31950).
- Hanging up: closing the socket ends `<Connect>`, and with no TwiML after it the call ends
  (https://www.twilio.com/docs/voice/twiml/stream).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
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
    xml_text,
)
from gateway.protocols.jsonstream import JsonMediaStream
from gateway.protocols.twilio_signature import validate_twilio_signature
from gateway.protocols.webhooks import (
    XML,
    StreamOffer,
    StreamProvider,
    Webhook,
    WebhookAnswer,
    WebhookRequest,
)

__all__ = ["TOKEN_PARAM", "TWILIO", "TwilioProtocol", "twilio_twiml"]

# mediaFormat.encoding values we can decode (Twilio documents only audio/x-mulaw at 8000 Hz),
# and the only rate G.711 has
_ENCODINGS = {"audio/x-mulaw": "pcmu", "audio/x-alaw": "pcma"}
_RATES = (8000,)


class TwilioProtocol(JsonMediaStream):
    name = "twilio"

    def _handle(self, event: str, msg: dict[str, Any]) -> bytes | list[Event]:
        if event == "media":
            self._require_started(event)
            self._check_stream(msg, "streamSid")
            return self._audio(get_obj(msg, "media", "twilio media"), "twilio media")
        if event == "connected":
            if self.started:
                raise ProtocolError("twilio: 'connected' after 'start'")
            return [Connected(opt_str(msg, "version"))]
        if event == "start":
            return self._started(_parse_start(msg))
        if event == "dtmf":
            self._require_started(event)
            self._check_stream(msg, "streamSid")
            dtmf = get_obj(msg, "dtmf", "twilio dtmf")
            return [DtmfIn(check_digit(dtmf.get("digit"), "twilio dtmf"))]
        if event == "mark":
            self._require_started(event)
            self._check_stream(msg, "streamSid")
            mark = get_obj(msg, "mark", "twilio mark")
            return [MarkPlayed(get_str(mark, "name", "twilio mark"))]
        if event == "stop":
            self._check_stream(msg, "streamSid")
            return self._ended("stop")
        return [Ignored(f"twilio: event {show(event)}")]

    def _render(self, cmd: Command) -> list[str | bytes]:
        sid = self.stream_id
        if isinstance(cmd, SendAudio):
            return [media_json((("event", "media"), ("streamSid", sid)), "media", (),
                               bytes(cmd.payload))]
        if isinstance(cmd, SendMark):
            return [dumps({"event": "mark", "streamSid": sid, "mark": {"name": cmd.name}})]
        if isinstance(cmd, ClearAudio):
            return [dumps({"event": "clear", "streamSid": sid})]
        return []  # Hangup: close the socket


def _parse_start(msg: dict[str, Any]) -> CallStarted:
    start = get_obj(msg, "start", "twilio start")
    stream_sid = get_str(start, "streamSid", "twilio start")
    call_sid = get_str(start, "callSid", "twilio start")
    fmt = start.get("mediaFormat")
    wire = WireFormat("pcmu", 8000)
    if fmt is not None:
        if not isinstance(fmt, dict):
            raise ProtocolError("twilio start: mediaFormat must be an object")
        encoding = fmt.get("encoding", "audio/x-mulaw")
        codec = _ENCODINGS.get(encoding) if isinstance(encoding, str) else None
        if codec is None:
            raise ProtocolError(f"twilio start: unsupported encoding {show(encoding)}")
        rate = parse_rate(fmt.get("sampleRate", 8000), _RATES, "twilio start")
        wire = WireFormat(codec, rate)  # type: ignore[arg-type]
    params = str_params(start.get("customParameters"), "twilio start")
    return CallStarted(call_id=call_sid, stream_id=stream_sid, wire=wire, params=params)


def twilio_twiml(stream_url: str, params: Mapping[str, str] | None = None) -> str:
    """TwiML answering a call with a bidirectional stream to `stream_url` (wss://HOST/path),
    passing `params` as `<Parameter name value>`; they come back as start.customParameters
    (https://www.twilio.com/docs/voice/twiml/stream). Parameters come from the webhook's
    request: characters XML cannot carry (control characters) are left out of them."""
    response = ET.Element("Response")
    stream = ET.SubElement(ET.SubElement(response, "Connect"), "Stream", url=stream_url)
    for key, value in (params or {}).items():
        ET.SubElement(stream, "Parameter", name=xml_text(str(key)), value=xml_text(str(value)))
    return xml_document(response)


TOKEN_PARAM = "atoms_stream_token"  # the `<Parameter>` with a stream's per-call token


def _check(auth_token: str, hook: WebhookRequest) -> str | None:
    """`X-Twilio-Signature` over the URL and the form (the voice webhook and, with no form,
    the stream's upgrade)."""
    if validate_twilio_signature(auth_token, hook.url, dict(hook.form) or None,
                                 hook.headers.get("X-Twilio-Signature")):
        return None
    return "invalid Twilio signature"


def _voice(hook: WebhookRequest, stream: StreamOffer) -> WebhookAnswer:
    """TwiML to the stream, with the call's details and the per-call token as parameters
    (they come back in the start message)."""
    params = {k: hook.form[k] for k in ("CallSid", "From", "To", "Direction") if k in hook.form}
    if stream.token:
        params[TOKEN_PARAM] = stream.token
    return WebhookAnswer(twilio_twiml(stream.url, params), XML)


TWILIO = StreamProvider(TwilioProtocol, "twilio_auth_token", _check, "form",
                        (Webhook("POST", "voice", _voice, reads_form=True),),
                        start_token=TOKEN_PARAM)
