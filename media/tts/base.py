"""Text-to-speech interface: `synthesize(text)` streams 16 kHz int16 audio as it is made.

    tts = SomeTTS(...)
    tts.check()                          # start-up: RuntimeError naming what is missing
    stream = tts.synthesize("Hello.")    # an async generator
    try:
        async for chunk in stream:       # 1-D int16 arrays at tts.sample_rate (16000),
            ...                          # any length, released as soon as available
    finally:
        await stream.aclose()

Cancelling the consuming task, or closing the generator early, stops the synthesis at
once and frees what it holds (a child process, a socket): engines do their clean-up in
the generator's `finally`. An engine resamples to 16 kHz itself, so callers never see
its native rate. Synthesis errors are raised from the iteration as RuntimeError.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Protocol

import numpy as np

__all__ = ["TtsEngine", "synthesize_all"]


class TtsEngine(Protocol):
    sample_rate: int  # always 16000

    def check(self) -> None:
        """Raise RuntimeError naming what is missing and how to install it."""
        ...

    def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]: ...


async def synthesize_all(engine: TtsEngine, text: str) -> np.ndarray:
    """The whole utterance as one array (for tests, prompts, and caching)."""
    chunks: list[np.ndarray] = []
    stream = engine.synthesize(text)
    try:
        async for chunk in stream:
            chunks.append(chunk)
    finally:
        await stream.aclose()
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
