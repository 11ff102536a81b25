"""A bounded cache in front of any TTS engine: the same text is synthesized once.

Voice agents say the same things over and over (greetings, "one moment please", hold
messages); caching them takes a process spawn or an API call off every call. Audio is
stored only when a synthesis ran to completion, so a barge-in never leaves a clipped
entry behind. Least recently used entries go first once `max_bytes` is reached.

Callers asking for a text that is being synthesized right now share that synthesis
(a hundred calls answered in the same second with the same greeting start one espeak-ng
process, not a hundred). It runs in a task of its own and is cancelled when its last
listener leaves before the end (a barge-in on a single call stops it as before).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncGenerator
from typing import Any

import numpy as np

from runtime.tasks import cancel_and_wait


class _Flight:
    """One synthesis in progress and the chunks it has produced so far."""

    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []
        self.done = False
        self.error: BaseException | None = None
        self.listeners = 0
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    def notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()  # waiters hold the old, now set, event


class CachedTTS:
    """Wraps a `TtsEngine` (`synthesize(text)`, `check()`, `sample_rate`)."""

    def __init__(self, engine: Any, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.engine = engine
        self.max_bytes = max_bytes
        self.sample_rate = engine.sample_rate
        self._entries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._bytes = 0
        self._flights: dict[str, _Flight] = {}
        self.hits = 0
        self.misses = 0
        self.shared = 0  # requests that joined a synthesis already running

    def check(self) -> None:
        self.engine.check()

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        key = " ".join(text.split())
        cached = self._entries.get(key)
        if cached is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            # in one piece: the playout slices 20 ms frames straight out of the shared,
            # read-only array (one push per sentence, not one per 200 ms)
            yield cached
            return
        flight = self._flights.get(key)
        if flight is None:
            self.misses += 1
            flight = self._flights[key] = _Flight()
            flight.task = asyncio.create_task(self._run(key, text, flight),
                                              name=f"tts:{key[:30]}")
        else:
            self.shared += 1
        flight.listeners += 1
        try:
            i = 0
            while True:
                while i < len(flight.chunks):
                    yield flight.chunks[i]
                    i += 1
                if flight.done:
                    if flight.error is not None:
                        raise flight.error
                    return
                await flight.changed.wait()
        finally:
            flight.listeners -= 1
            if flight.listeners == 0 and not flight.done and flight.task is not None:
                self._flights.pop(key, None)
                # nobody listens any more: stop (the engine cleans up, its child reaped), cache nothing
                await cancel_and_wait(flight.task)

    async def _run(self, key: str, text: str, flight: _Flight) -> None:
        stream = self.engine.synthesize(text)
        try:
            async for chunk in stream:
                flight.chunks.append(chunk)
                flight.notify()
        except Exception as exc:  # every listener gets it
            flight.error = exc
        finally:
            flight.done = True
            flight.notify()
            if self._flights.get(key) is flight:
                del self._flights[key]
            await stream.aclose()
        if flight.error is None:
            audio = (np.concatenate(flight.chunks) if flight.chunks
                     else np.zeros(0, dtype=np.int16))
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

