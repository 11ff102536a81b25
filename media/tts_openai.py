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
import os
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np
import openai

from media.frames import SAMPLE_RATE
from media.openai_errors import error_message
from media.resample import StreamResampler

__all__ = ["OpenAITTS", "DEFAULT_MODEL", "DEFAULT_VOICE"]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
_PLACEHOLDER_KEY = "not-needed"


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
        self._url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self._key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if self._key is None and self._url:
            self._key = _PLACEHOLDER_KEY
        self._timeout = openai.Timeout(timeout, connect=min(timeout, 5.0))
        self._client: openai.AsyncOpenAI | None = None

    @property
    def server(self) -> str:
        return self._url or "api.openai.com"

    def check(self) -> None:
        if self._key is None:
            raise RuntimeError("OpenAI text-to-speech needs a key: set OPENAI_API_KEY "
                               "(or ATOMS_TTS_URL for a compatible server that needs none)")

    def _api(self) -> openai.AsyncOpenAI:
        if self._client is None:
            self.check()
            # No retries: a sentence retried a second later is worse than one skipped.
            self._client = openai.AsyncOpenAI(api_key=self._key, base_url=self._url,
                                              timeout=self._timeout, max_retries=0)
        return self._client

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        params: dict[str, Any] = {"model": self.model, "voice": self.voice, "input": text,
                                  "response_format": "pcm"}
        if self.instructions:
            params["instructions"] = self.instructions
        if self.speed is not None:
            params["speed"] = self.speed
        resampler = StreamResampler(self.native_rate, SAMPLE_RATE)
        odd = b""  # a sample split between two pieces of the body
        try:
            async with self._api().audio.speech.with_streaming_response.create(
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
        if self._client is not None:
            await self._client.close()
            self._client = None

