"""Speaker: turns the agent's output (sentences of text, raw audio) into playout audio.

Items are spoken strictly in order by one worker task per call. `cancel()` drops
everything queued and stops the synthesis in progress at once (barge-in).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from gateway.logtext import printable
from runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_EMPTY = np.zeros(0, dtype=np.int16)


def _nothing() -> None:
    return None


def _shown(item: str | np.ndarray) -> str:
    """What failed to speak, for a log line: the text's start (escaped), or the audio's
    length."""
    if isinstance(item, str):
        return f"'{printable(item, 80)}'"
    return f"{len(item)} samples of audio"


class Speaker:
    """Ordered text-to-speech into a playout buffer, cancellable."""

    def __init__(self, tts: Any, playout: Any, on_audio: Callable[[], None] | None = None,
                 call_id: str = "") -> None:
        self._tts = tts
        self._playout = playout
        self._on_audio = on_audio or _nothing
        self._call_id = call_id
        self._queue: asyncio.Queue[tuple[str, str | np.ndarray, bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._active = False
        self.queued_samples = 0  # of ready-made audio (`play`) not yet in the playout buffer

    @property
    def busy(self) -> bool:
        """True while anything is queued or being synthesized."""
        return self._active or not self._queue.empty()

    def say(self, utterance_id: str, text: str, last: bool = True) -> None:
        """Speak `text` as part of an utterance; `last` closes the utterance."""
        self._put(utterance_id, text, last)

    def play(self, utterance_id: str, pcm: np.ndarray, last: bool = True) -> None:
        """Play ready-made 16 kHz audio as (part of) an utterance."""
        self.queued_samples += len(pcm)
        self._put(utterance_id, pcm, last)

    def _put(self, utterance_id: str, item: str | np.ndarray, last: bool) -> None:
        self._queue.put_nowait((utterance_id, item, last))
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"speaker:{self._call_id}")

    def drop_queued(self) -> None:
        """Forget everything not yet started (synchronous: part of a barge-in's first step)."""
        self._queue = asyncio.Queue()
        self.queued_samples = 0

    async def cancel(self) -> None:
        """Drop queued items and stop the current synthesis."""
        self._queue = asyncio.Queue()
        self.queued_samples = 0
        task, self._task = self._task, None
        await cancel_and_wait(task)
        self._active = False

    async def close(self) -> None:
        """Stop for good, and let go of the owner's callback (a reference cycle)."""
        await self.cancel()
        self._on_audio = _nothing

    async def _run(self) -> None:
        while not self._queue.empty():
            utterance_id, item, last = self._queue.get_nowait()
            self._active = True
            if not isinstance(item, str):
                self.queued_samples = max(0, self.queued_samples - len(item))
            try:
                if isinstance(item, str):
                    await self._speak(utterance_id, item)
                elif len(item):
                    self._playout.push(utterance_id, item, final=False)
                    self._on_audio()
                if last:
                    self._playout.push(utterance_id, _EMPTY, final=True)
                    self._on_audio()
            except asyncio.CancelledError:
                raise
            except RuntimeError as exc:  # the engine's own report (a server's error, ...)
                log.error("call %s: speech synthesis failed for %s: %s", self._call_id,
                          _shown(item), printable(exc))
            except Exception:
                log.exception("call %s: speech synthesis failed for %s", self._call_id,
                              _shown(item))
            finally:
                self._active = False
        self._on_audio()  # wake the ticker: a pending hang-up may now run

    async def _speak(self, utterance_id: str, text: str) -> None:
        """Stream one sentence into playout as it is synthesized; its text rides on the
        first piece, and covers every piece until the next sentence's text."""
        if not text.strip():
            return
        first = True
        stream = self._tts.synthesize(text)
        try:
            async for chunk in stream:
                if not len(chunk):
                    continue
                self._playout.push(utterance_id, chunk, text=text if first else None,
                                   final=False)
                first = False
                self._on_audio()
        finally:
            await stream.aclose()
