"""Exotel Voicebot applet (bidirectional AgentStream), sans-I/O, and its URL answer webhook
(`EXOTEL`).

Facts from https://developer.exotel.com/docs/agentstream/websocket-protocol and
https://developer.exotel.com/docs/agentstream/stream-voicebot-applet :
- Exotel sends `connected`; `start` {sequence_number, stream_sid, start: {stream_sid,
  call_sid, account_sid, from, to, custom_parameters, media_format: {encoding "audio/x-raw",
  sample_rate "8000", bit_rate "16"}}}; `media` {stream_sid, media: {chunk, timestamp,
  payload}}; `dtmf` {dtmf: {digit, duration}}; `mark` {mark: {name}} once audio we sent before
  the mark has played; `stop` {stop: {call_sid, account_sid, reason}}.
- Audio is raw/slin: 16-bit little-endian mono PCM, base64, 8000 Hz by default (16000 or 24000
  via `?sample-rate=` on the applet URL). An extension guide also lists mu-law 8 kHz.
- We send `media` {event, stream_sid, media: {payload}} in chunks that are multiples of 320
  bytes (3.2 KB to 100 KB recommended), `mark` {event, stream_sid, mark: {name}}, and `clear`
  {event, stream_sid}.
- There is no answer webhook: the Voicebot applet holds a wss:// URL, or an https:// URL that
  returns JSON {"url": "wss://..."}; up to 3 custom parameters ride on that URL's query.
"""

from __future__ import annotations

import json
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
)
from gateway.protocols.jsonstream import JsonMediaStream
from gateway.protocols.webhooks import (
    JSON,
    StreamOffer,
    StreamProvider,
    Webhook,
    WebhookAnswer,
    WebhookRequest,
    same_secret,
)

__all__ = ["EXOTEL", "ExotelProtocol", "exotel_url_answer"]

_CODECS = {"audio/x-raw": "l16", "audio/l16": "l16", "raw/slin": "l16", "audio/x-mulaw": "pcmu"}
_RATES = (8000, 16000, 24000)


class ExotelProtocol(JsonMediaStream):
    name = "exotel"

    def __init__(self, *, sample_rate: int = 8000, **kwargs: Any) -> None:
        """`sample_rate`: the rate set on the applet URL, used when `start` does not say."""
        super().__init__(**kwargs)
        if sample_rate not in _RATES:
            raise ValueError(f"Exotel sample rate must be one of {_RATES}, got {sample_rate!r}")
        self.default_rate = sample_rate

    def _handle(self, event: str, msg: dict[str, Any]) -> bytes | list[Event]:
        if event == "media":
            self._require_started(event)
            self._check_stream(msg, "stream_sid")
            return self._audio(get_obj(msg, "media", "exotel media"), "exotel media")
        if event == "connected":
            if self.started:
                raise ProtocolError("exotel: 'connected' after 'start'")
            return [Connected()]
        if event == "start":
            return self._started(self._parse_start(msg))
        if event == "dtmf":
            self._require_started(event)
            dtmf = get_obj(msg, "dtmf", "exotel dtmf")
            return [DtmfIn(check_digit(dtmf.get("digit"), "exotel dtmf"))]
        if event == "mark":
            self._require_started(event)
            mark = get_obj(msg, "mark", "exotel mark")
            return [MarkPlayed(get_str(mark, "name", "exotel mark"))]
        if event == "stop":
            stop = msg.get("stop")
            reason = opt_str(stop, "reason") if isinstance(stop, dict) else ""
            return self._ended(reason or "stop")
        return [Ignored(f"exotel: event {show(event)}")]

    def _render(self, cmd: Command) -> list[str | bytes]:
        sid = self.stream_id
        if isinstance(cmd, SendAudio):
            return [media_json((("event", "media"), ("stream_sid", sid)), "media", (),
                               bytes(cmd.payload))]
        if isinstance(cmd, SendMark):
            return [dumps({"event": "mark", "stream_sid": sid, "mark": {"name": cmd.name}})]
        if isinstance(cmd, ClearAudio):
            return [dumps({"event": "clear", "stream_sid": sid})]
        return []  # Hangup: close the socket; the flow moves to the next applet

    def _parse_start(self, msg: dict[str, Any]) -> CallStarted:
        start = get_obj(msg, "start", "exotel start")
        stream_sid = start.get("stream_sid", msg.get("stream_sid"))
        if not isinstance(stream_sid, str):
            raise ProtocolError("exotel start: missing string 'stream_sid'")
        call_sid = get_str(start, "call_sid", "exotel start")
        fmt = start.get("media_format")
        wire = WireFormat("l16", self.default_rate)
        if fmt is not None:
            if not isinstance(fmt, dict):
                raise ProtocolError("exotel start: media_format must be an object")
            encoding = fmt.get("encoding", "audio/x-raw")
            codec = _CODECS.get(encoding.lower()) if isinstance(encoding, str) else None
            if codec is None:
                raise ProtocolError(f"exotel start: unsupported encoding {show(encoding)}")
            rate = parse_rate(fmt.get("sample_rate", self.default_rate), _RATES, "exotel start")
            wire = WireFormat(codec, rate)  # type: ignore[arg-type]
        return CallStarted(
            call_id=call_sid,
            stream_id=stream_sid,
            wire=wire,
            params=str_params(start.get("custom_parameters"), "exotel start"),
            from_number=opt_str(start, "from"),
            to_number=opt_str(start, "to"),
        )


def exotel_url_answer(stream_url: str) -> str:
    """The JSON body an https:// applet URL returns to point Exotel at our WebSocket."""
    return json.dumps({"url": stream_url})


def _check(token: str, hook: WebhookRequest) -> str | None:
    """Exotel signs nothing: the applet's URL carries our `?token=`."""
    return None if same_secret(hook.query.get("token"), token) else "missing or wrong token"


def _answer(hook: WebhookRequest, stream: StreamOffer) -> WebhookAnswer:
    return WebhookAnswer(exotel_url_answer(stream.with_token()), JSON)


EXOTEL = StreamProvider(ExotelProtocol, "exotel_token", _check, "url",
                        (Webhook("*", "answer", _answer),), secret_opens_stream=True)
