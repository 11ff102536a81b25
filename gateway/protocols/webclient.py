"""The web-client protocol of `/ws` (sans-I/O).

Client -> gateway:
- optional first text message `{"type": "start", "sample_rate": 16000, "context": {...}}`
  (one of the usual rates from 8000 to 48000 Hz, `AUDIO_RATES`; without it, binary audio
  means 16 kHz);
- binary messages: PCM16 little-endian mono at that rate, any length;
- text JSON: `{"type": "dtmf", "digit": "5"}`, `{"type": "text", "text": "..."}` (typed
  input, as if spoken), `{"type": "hangup"}`, or any session event (`system.*`/`agent.*`),
  which is delivered into the session (`agent.audio` and `system.audio.chunk` only at
  one of the rates above, in whole PCM16 samples; anything else closes the call with a
  reason).
A first message that is a `system.init` event selects the Atoms event protocol instead.

Gateway -> client: `{"type": "started", "call_id", "sample_rate"}`, binary PCM16 20 ms
frames of the agent's voice, `{"type": "clear"}` when the caller barged in, every session
event as JSON (`agent.speak`, `agent.transcript.update`, `system.control.interrupt`, ...),
and `{"type": "end", "reason"}` before the gateway closes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.events import SDKEvent, SDKSystemInitEvent, decode_event, parse_json
from gateway.audio_edge import AUDIO_RATES, audio_problem
from gateway.protocols.common import DTMF_DIGITS, ProtocolError, show

RATES = AUDIO_RATES


@dataclass(frozen=True, slots=True)
class WebStart:
    sample_rate: int = 16000
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class WebAudio:
    pcm: bytes


@dataclass(frozen=True, slots=True)
class WebDtmf:
    digit: str


@dataclass(frozen=True, slots=True)
class WebText:
    text: str


@dataclass(frozen=True, slots=True)
class WebHangup:
    reason: str = "client hung up"


@dataclass(frozen=True, slots=True)
class WebEvent:
    event: SDKEvent


@dataclass(frozen=True, slots=True)
class AtomsInit:
    """The client speaks the Atoms event protocol (an orchestrator or a text chat)."""

    init: SDKSystemInitEvent


WebMessage = WebStart | WebAudio | WebDtmf | WebText | WebHangup | WebEvent | AtomsInit


class WebClientProtocol:
    """State of one `/ws` connection: has it started, at which rate."""

    def __init__(self, max_message: int = 256 * 1024) -> None:
        self.max_message = max_message
        self.started = False
        self.sample_rate = 16000

    def receive_bytes(self, data: bytes) -> list[WebMessage]:
        if len(data) > self.max_message:
            raise ProtocolError(f"binary message of {len(data)} bytes exceeds {self.max_message}")
        if not self.started and _looks_like_event(data):
            # Atoms peers (the published SDK, our RemoteSession) send JSON in binary frames.
            return self.receive_text(data.decode("utf-8"))
        if len(data) % 2:
            raise ProtocolError("PCM16 audio must have an even number of bytes")
        out: list[WebMessage] = []
        if not self.started:
            self.started = True
            out.append(WebStart(self.sample_rate))
        out.append(WebAudio(bytes(data)))
        return out

    def receive_text(self, text: str) -> list[WebMessage]:
        if len(text) > self.max_message:
            raise ProtocolError(
                f"text message of {len(text)} characters exceeds {self.max_message}"
            )
        try:
            msg = parse_json(text)  # nested at most MAX_JSON_DEPTH levels
        except ValueError as exc:
            raise ProtocolError(f"malformed JSON: {exc}") from None
        if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
            raise ProtocolError("a text message must be a JSON object with a string 'type'")
        kind = msg["type"]
        if not self.started:
            self.started = True
            if kind == "system.init":
                return [AtomsInit(self._event(msg))]  # type: ignore[arg-type]
            if kind == "start":
                return [self._start(msg)]
            out: list[WebMessage] = [WebStart(self.sample_rate)]
            return out + self._message(kind, msg)
        if kind == "start":
            raise ProtocolError("'start' after the call started")
        return self._message(kind, msg)

    def _start(self, msg: dict[str, Any]) -> WebStart:
        rate = msg.get("sample_rate", 16000)
        if isinstance(rate, bool) or not isinstance(rate, int) or rate not in RATES:
            raise ProtocolError(f"start: sample_rate must be one of {RATES}, got {show(rate)}")
        context = msg.get("context", {})
        if not isinstance(context, dict):
            raise ProtocolError("start: context must be an object")
        self.sample_rate = rate
        return WebStart(rate, context)

    def _message(self, kind: str, msg: dict[str, Any]) -> list[WebMessage]:
        if kind == "dtmf":
            digit = msg.get("digit")
            if not isinstance(digit, str) or digit.upper() not in DTMF_DIGITS:
                raise ProtocolError(f"dtmf: {show(digit)} is not a DTMF digit")
            return [WebDtmf(digit.upper())]
        if kind == "text":
            text = msg.get("text")
            if not isinstance(text, str):
                raise ProtocolError("text: missing string 'text'")
            return [WebText(text)]
        if kind in ("hangup", "stop"):
            return [WebHangup()]
        if kind.startswith(("system.", "agent.")):
            return [WebEvent(self._event(msg))]
        raise ProtocolError(f"unknown message type {show(kind)}")

    @staticmethod
    def _event(msg: dict[str, Any]) -> SDKEvent:
        try:
            event = decode_event(msg)
        except ValueError as exc:
            raise ProtocolError(str(exc)) from None
        if event.type in ("agent.audio", "system.audio.chunk"):
            problem = audio_problem(event)
            if problem is not None:
                raise ProtocolError(problem)
        return event


def _looks_like_event(data: bytes) -> bool:
    """A binary first message that is JSON text naming a type (not PCM audio)."""
    if not data.startswith(b"{") or b'"type"' not in data:
        return False
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
