"""Cloud TTS over OpenAI's `/v1/audio/speech` (or any server that speaks it).

    tts = OpenAITTS()                  # key from OPENAI_API_KEY; check() names what is missing
    async for chunk in tts.synthesize("Hello."): ...   # 16 kHz int16, as it arrives

Each sentence is one streamed request (`response_format="pcm"`: raw 16-bit little-endian
mono at 24 kHz, OpenAI's rate; `native_rate` for a compatible server that sends another).
The body is read in pieces of `chunk_ms` as the server sends them, resampled to 16 kHz
with a `StreamResampler` and yielded at once, so playout starts with the first piece, not
the whole sentence. Closing the generator (barge-in) closes the response, which drops
the connection: the server stops synthesising.

Servers: OpenAI (`gpt-4o-mini-tts`, `tts-1`; voices `alloy`, `nova`, ...) and
self-hosted ones with the same endpoint (Kokoro-FastAPI, LocalAI, openedai-speech, ...)
through `base_url` (`ATOMS_TTS_URL`, else `OPENAI_BASE_URL`). With a base URL and no key
a placeholder key is sent. The official `openai` package makes the requests: one client
(one connection pool) per engine, shared by every call.

Failures are the interface's: a refused key, an HTTP error, a dropped connection or a
timeout is raised from the iteration as RuntimeError naming the server, and the speaker
logs it and goes on with the next sentence; the call goes on.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import numpy as np
import openai

from media.frames import SAMPLE_RATE
from media.openai_api import OpenAIEndpoint, error_message
from media.resample import StreamResampler

__all__ = ["OpenAITTS", "DEFAULT_MODEL", "DEFAULT_VOICE", "OpenAITtsOptions", "Options",
           "create", "describe"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"


class OpenAITTS:
    """The engine: created once per process, one request per sentence."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        voice: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        instructions: str | None = None,
        speed: float | None = None,
        native_rate: int = 24000,
        chunk_ms: int = 40,
        timeout: float = 15.0,
    ) -> None:
        if native_rate < 8000:
            raise ValueError("native_rate must be at least 8000 Hz")
        self.voice = voice or DEFAULT_VOICE
        self.model = model or DEFAULT_MODEL
        self.instructions = instructions
        self.speed = speed
        self.native_rate = native_rate
        self._chunk_bytes = max(2, native_rate * chunk_ms // 1000 * 2)
        self._api = OpenAIEndpoint(api_key, base_url, timeout)

    @property
    def server(self) -> str:
        return self._api.server

    def check(self) -> None:
        if self._api.key is None:
            raise RuntimeError("OpenAI text-to-speech needs a key: set OPENAI_API_KEY "
                               "(or ATOMS_TTS_URL for a compatible server that needs none)")

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        self.check()
        params: dict[str, Any] = {"model": self.model, "voice": self.voice, "input": text,
                                  "response_format": "pcm"}
        if self.instructions:
            params["instructions"] = self.instructions
        if self.speed is not None:
            params["speed"] = self.speed
        resampler = StreamResampler(self.native_rate, SAMPLE_RATE)
        odd = b""  # a sample split between two pieces of the body
        try:
            async with self._api.client().audio.speech.with_streaming_response.create(
                    **params) as response:
                async for data in response.iter_bytes(self._chunk_bytes):
                    data = odd + data
                    cut = len(data) - len(data) % 2
                    odd = data[cut:]
                    if cut:
                        yield resampler.process(np.frombuffer(data[:cut], "<i2"))
        except openai.APIStatusError as exc:
            raise RuntimeError(f"text-to-speech at {self.server}: HTTP {exc.status_code}: "
                               f"{error_message(exc)}") from exc
        except Exception as exc:  # the connection, mid-body: httpx's errors, not openai's
            raise RuntimeError(f"text-to-speech at {self.server}: {type(exc).__name__}: "
                               f"{exc}") from exc
        tail = resampler.flush()
        if len(tail):
            yield tail

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._api.aclose()


@dataclass(frozen=True)
class OpenAITtsOptions:
    """What `tts="openai"` is made from (OpenAI's speech endpoint or a compatible server)."""

    voice: str | None = None  # None: DEFAULT_VOICE
    model: str | None = None  # None: DEFAULT_MODEL
    api_key: str | None = None  # None: OPENAI_API_KEY
    url: str | None = None  # base URL of a compatible server (None: OpenAI's)


Options = OpenAITtsOptions  # (the factory's name for it: `media.tts.get_engine`)


def create(options: OpenAITtsOptions) -> OpenAITTS:
    return OpenAITTS(voice=options.voice, model=options.model, api_key=options.api_key,
                     base_url=options.url)


def describe(options: OpenAITtsOptions, engine: OpenAITTS) -> str:
    """The start-up line's words for this engine."""
    return f"openai (voice {engine.voice}, model {engine.model}, at {engine.server})"
