"""Streaming cloud STT over Smallest AI's Pulse WebSocket, the Atoms platform's own
recogniser.

    stt = PulseSTT()               # key from SMALLEST_API_KEY; check() names what is missing
    stream = stt.new_stream()      # one per call (cheap: no socket yet)
    partials = stream.feed(frame)  # never blocks: enqueues audio, returns interim results
    final = await stream.end_of_turn_async()

The protocol, as the published SDK (`smallestai` 4.4.0, `waves.pulse_stt_streaming`)
speaks it: `wss://api.smallest.ai/waves/v1/pulse/get_text?language=en&encoding=linear16
&sample_rate=16000` with `Authorization: Bearer KEY`; binary messages of raw audio; the
text message `{"type": "finalize"}` ends the audio; the server answers with JSON messages
`{"session_id", "transcript", "is_final", "is_last", ...}`. Interim results become
partial transcripts, final ones are joined into the turn's transcript, which is ready
once a message has `is_last` (or the server closes normally after the finalize).

One WebSocket per utterance, audio in 100 ms batches, failures contained: the shared
design of `media/stt/ws.py` (Deepgram uses it too).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass

import aiohttp

from media.frames import SAMPLE_RATE
from media.stt.ws import WsSttEngine, WsUtterance

__all__ = ["PulseSTT", "PULSE_URL", "PulseOptions", "Options", "create", "describe"]

log = logging.getLogger(__name__)

PULSE_URL = "wss://api.smallest.ai/waves/v1/pulse/get_text"
_FINALIZE = json.dumps({"type": "finalize"})


class PulseSTT(WsSttEngine):
    """The engine: created once per process; `new_stream()` per call."""

    sample_rate = SAMPLE_RATE
    label, service, log = "pulse", "Smallest Pulse", log

    def __init__(
        self,
        api_key: str | None = None,
        url: str = PULSE_URL,
        language: str = "en",
        *,
        extra_params: dict[str, str] | None = None,
        batch_ms: int = 100,
        final_timeout: float = 2.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.api_key = api_key or os.environ.get("SMALLEST_API_KEY") or None
        self.url = url
        self.language = language
        self.batch_bytes = max(1, SAMPLE_RATE * batch_ms // 1000) * 2
        self.final_timeout = final_timeout
        self.connect_timeout = connect_timeout
        self.keepalive_s = 5.0  # (Pulse has no keep-alive message: nothing is sent)
        self.params = {"language": language, "encoding": "linear16",
                       "sample_rate": str(SAMPLE_RATE), **(extra_params or {})}

    def check(self) -> None:
        self.check_url()
        if not self.api_key:
            raise RuntimeError("Smallest Pulse speech recognition needs a key: set "
                               "SMALLEST_API_KEY")

    def new_utterance(self, number: int) -> WsUtterance:
        return _PulseUtterance(self, number)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}


class _PulseUtterance(WsUtterance):
    """One turn on one `/pulse/get_text` socket: Pulse's messages."""

    def end_messages(self) -> list[str]:
        return [_FINALIZE]

    def refused(self, exc: aiohttp.WSServerHandshakeError) -> str:
        if exc.status in (401, 403):
            return (f"Smallest Pulse rejected the API key (HTTP {exc.status}); "
                    "check SMALLEST_API_KEY")
        return f"Smallest Pulse refused the connection (HTTP {exc.status}: {exc.message})"

    def on_text(self, data: str) -> None:
        try:
            msg = json.loads(data)
            text = msg.get("transcript")
        except (ValueError, AttributeError):
            log.warning("pulse: utterance %d: ignoring a message that is not a JSON object: "
                        "%.200r", self.number, data)
            return
        if msg.get("status") == "error" or "error" in msg:
            detail = msg.get("message") or msg.get("error") or data
            self.fail(f"Smallest Pulse reported an error: {str(detail)[:300]}", logging.ERROR)
            return
        if isinstance(text, str):
            self.hypothesis(text, bool(msg.get("is_final")))
        if msg.get("is_last"):
            self.settled()


@dataclass(frozen=True)
class PulseOptions:
    """What `stt="pulse"` is made from (Smallest AI's Pulse)."""

    api_key: str | None = None  # None: SMALLEST_API_KEY
    url: str | None = None  # None: PULSE_URL
    language: str = "en"


Options = PulseOptions  # (the factory's name for it: `media.stt.get_engine`)


def create(options: PulseOptions) -> PulseSTT:
    return PulseSTT(api_key=options.api_key, url=options.url or PULSE_URL,
                    language=options.language)


def describe(options: PulseOptions, engine: PulseSTT) -> str:
    """The start-up line's words for this engine."""
    return f"pulse (at {engine.url})"
