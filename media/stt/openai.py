"""Cloud STT over OpenAI's `/v1/audio/transcriptions` (or any server that speaks it).

    stt = OpenAISTT()              # key from OPENAI_API_KEY; check() names what is missing
    stream = stt.new_stream()      # one per call
    stream.feed(frame)             # buffers the turn's audio; no partial results
    final = await stream.end_of_turn_async()   # one request with the whole turn

Whisper-style recognisers take a whole utterance, not a stream: the caller's audio is
kept while they speak (the voice loop feeds a turn's frames, its pre-roll included) and
sent as one 16 kHz mono WAV when the turn ends. `end_of_turn_async()` starts that request
at once and frees the stream for the next turn, so the caller can talk on while it runs.
Servers: OpenAI (`gpt-4o-mini-transcribe`, `gpt-4o-transcribe`, `whisper-1`) and
self-hosted or other hosted ones with the same endpoint (faster-whisper servers such as
Speaches, whisper.cpp's server, LocalAI, Groq's `whisper-large-v3`, ...) through
`base_url` (`ATOMS_STT_URL`, else `OPENAI_BASE_URL`). The official `openai` package makes
the requests: one client (one connection pool) per engine, shared by every call.

The price of a whole-utterance recogniser is latency: the transcript comes one request
after the turn ends (the upload plus the server's decoding), where a streaming one
(Deepgram) has it ready. Turns shorter than `min_ms` send nothing; a turn is cut at
`max_s` (the rest of it is dropped, with a warning).

Failures are contained: an HTTP error, a refused key, a dropped connection or a timeout
is logged, that turn has no transcript (None), and the next turn tries again.
"""

from __future__ import annotations

import asyncio
import io
import logging
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai

from media.frames import SAMPLE_RATE
from media.openai_api import OpenAIEndpoint, error_message
from media.stt.base import Transcript, check_frame

__all__ = ["OpenAISTT", "OpenAISttStream", "DEFAULT_MODEL", "OpenAISttOptions", "Options",
           "create", "describe"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini-transcribe"


class OpenAISTT:
    """The engine: created once per process; `new_stream()` per call."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        language: str | None = "en",
        *,
        prompt: str | None = None,
        timeout: float = 15.0,
        min_ms: int = 100,
        max_s: float = 60.0,
    ) -> None:
        self.model = model or DEFAULT_MODEL
        self.language = language
        self.prompt = prompt
        self.min_bytes = SAMPLE_RATE * 2 * min_ms // 1000
        self.max_bytes = int(SAMPLE_RATE * 2 * max_s)
        self._api = OpenAIEndpoint(api_key, base_url, timeout)

    @property
    def server(self) -> str:
        return self._api.server

    def check(self) -> None:
        if self._api.key is None:
            raise RuntimeError("OpenAI speech recognition needs a key: set OPENAI_API_KEY "
                               "(or ATOMS_STT_URL for a compatible server that needs none)")

    def new_stream(self) -> OpenAISttStream:
        return OpenAISttStream(self)

    async def transcribe(self, pcm: bytes) -> str | None:
        """One turn's audio (16 kHz int16 bytes) to its text; None on any failure."""
        self.check()
        params: dict[str, Any] = {"model": self.model, "response_format": "json",
                                  "file": ("turn.wav", _wav(pcm), "audio/wav")}
        if self.language:
            params["language"] = self.language
        if self.prompt:
            params["prompt"] = self.prompt
        try:
            result = await self._api.client().audio.transcriptions.create(**params)
        except openai.APIStatusError as exc:
            log.warning("speech recognition at %s: HTTP %s: %s; this turn has no transcript",
                        self.server, exc.status_code, error_message(exc))
            return None
        except openai.APIError as exc:
            log.warning("speech recognition at %s failed: %s: %s; this turn has no transcript",
                        self.server, type(exc).__name__, exc)
            return None
        text = (getattr(result, "text", "") or "").strip()
        return text or None

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._api.aclose()


class OpenAISttStream:
    """One call: the audio of the turn in progress, and the requests of turns that ended."""

    def __init__(self, engine: OpenAISTT) -> None:
        self._engine = engine
        self._audio = bytearray()
        self._cut = False
        self._pending: set[asyncio.Task[Transcript | None]] = set()
        self._closed = False

    def feed(self, frame: np.ndarray) -> list[Transcript]:
        check_frame(frame)
        if self._closed:
            raise RuntimeError("this STT stream is closed")
        if len(self._audio) < self._engine.max_bytes:
            self._audio += frame.astype("<i2", copy=False).tobytes()
        elif not self._cut:
            self._cut = True
            log.warning("a caller turn is longer than %.0f s: the rest is not transcribed",
                        self._engine.max_bytes / SAMPLE_RATE / 2)
        return []

    def end_of_turn_async(self) -> asyncio.Task[Transcript | None]:
        """End the turn now; its transcript comes from the returned task."""
        audio, self._audio, self._cut = bytes(self._audio), bytearray(), False
        task = asyncio.get_running_loop().create_task(self._result(audio))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _result(self, audio: bytes) -> Transcript | None:
        if len(audio) < self._engine.min_bytes:
            return None
        text = await self._engine.transcribe(audio)
        return Transcript(text, True) if text else None

    def end_of_turn(self) -> Transcript | None:
        """Synchronous fallback: a whole-utterance recogniser has nothing before its
        request returns, so the turn's audio is dropped. Use `end_of_turn_async`."""
        self._audio, self._cut = bytearray(), False
        log.warning("OpenAISttStream.end_of_turn() cannot wait for the server: use "
                    "end_of_turn_async(); this turn has no transcript")
        return None

    def close(self) -> None:
        self._closed = True
        self._audio = bytearray()
        for task in list(self._pending):
            task.cancel()


def _wav(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm)
    return out.getvalue()


@dataclass(frozen=True)
class OpenAISttOptions:
    """What `stt="openai"` is made from (OpenAI's transcription endpoint or a compatible
    server)."""

    api_key: str | None = None  # None: OPENAI_API_KEY
    url: str | None = None  # base URL of a compatible server (None: OpenAI's)
    model: str | None = None  # None: DEFAULT_MODEL
    language: str | None = "en"  # (empty or None: the service detects it)
    phrases: list[str] | None = None  # sent as the prompt, to favour these words


Options = OpenAISttOptions  # (the factory's name for it: `media.stt.get_engine`)


def create(options: OpenAISttOptions) -> OpenAISTT:
    return OpenAISTT(model=options.model, api_key=options.api_key, base_url=options.url,
                     language=options.language or None,
                     prompt=", ".join(options.phrases) if options.phrases else None)


def describe(options: OpenAISttOptions, engine: OpenAISTT) -> str:
    """The start-up line's words for this engine."""
    return f"openai (model {engine.model}, at {engine.server})"
