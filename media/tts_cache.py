"""A bounded cache in front of any TTS engine: the same text is synthesized once.

Voice agents say the same things over and over (greetings, "one moment please", hold
messages); caching them takes a process spawn or an API call off every call. Audio is
stored only when a synthesis ran to completion, so a barge-in never leaves a clipped
entry behind. Least recently used entries go first once `max_bytes` is reached.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

CHUNK_SAMPLES = 3200  # cached audio comes out in 200 ms pieces, like a live synthesis


class CachedTTS:
    """Wraps a `TtsEngine` (`synthesize(text)`, `check()`, `sample_rate`)."""

    def __init__(self, engine: Any, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.sample_rate = engine.sample_rate
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def check(self) -> None:
        self.engine.check()

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        key = " ".join(text.split())
        cached = self._entries.get(key)
        if cached is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            for i in range(0, len(cached), CHUNK_SAMPLES):
                yield cached[i : i + CHUNK_SAMPLES]
            return
        self.misses += 1
        pieces: list[np.ndarray] = []
        stream = self.engine.synthesize(text)
        try:
            async for chunk in stream:
                pieces.append(chunk)
                yield chunk
        finally:
            await stream.aclose()
        audio = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int16)
        audio.setflags(write=False)
        self._store(key, audio)

    def _store(self, key: str, audio: np.ndarray) -> None:
        if audio.nbytes > self.max_bytes:
            return
        self._entries[key] = audio
        self._bytes += audio.nbytes
        while self._bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes
