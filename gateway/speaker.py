"""Speaker: turns the agent's output (sentences of text, raw audio) into playout audio.

Items are spoken strictly in order by one worker task per call. `cancel()` drops
everything queued and stops the synthesis in progress at once (barge-in).

Synthesis runs ahead of playout by a bounded amount: while more than `ahead_s` (8 s) of
audio waits in the playout buffer, the speaker stops pulling from the synthesiser (whose
stream then waits too: espeak blocks on its full pipe) and goes on once playout has
drained to `ahead_s - 2` s. (Plus at most one piece: a speech cache hands over a sentence
it holds whole.) A text longer than `LONG_TEXT_CHARS` is synthesised sentence by
sentence (`SentenceGatherer`), so one request to an engine stays short and a megabyte of
`agent.speak` costs a few seconds of audio in memory, not hours of it. While it waits for
room the speaker is not `busy` (the playout buffer is playing: the agent counts as
talking), so a replay under a virtual clock moves time on and pops the audio.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from gateway.logtext import printable
from media.sentences import SentenceGatherer
from runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_EMPTY = np.zeros(0, dtype=np.int16)
AHEAD_S = 8.0  # synthesise at most this much audio ahead of playout ...
RESUME_BELOW_S = 2.0  # ... and, once there, go on when this much less is queued
LONG_TEXT_CHARS = 1000  # a longer text goes to the synthesiser a sentence at a time
_SLICE_CHARS = 4096  # long text reaches the sentence gatherer in slices this long


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
                 call_id: str = "", ahead_s: float = AHEAD_S) -> None:
        self._tts = tts
        self._playout = playout
        self._on_audio = on_audio or _nothing
        self._call_id = call_id
        self._queue: asyncio.Queue[tuple[str, str | np.ndarray, bool]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._active = False
        self._room: asyncio.Future[None] | None = None  # set while waiting for playout room
        self.ahead_ms = ahead_s * 1000
        self.queued_samples = 0  # of ready-made audio (`play`) not yet in the playout buffer

    @property
    def busy(self) -> bool:
        """True while anything is queued or being synthesized, except while synthesis
        waits for playout to drain (the playout buffer then has audio: it is playing)."""
        return self._room is None and (self._active or not self._queue.empty())

    @property
    def waiting_for_room(self) -> bool:
        return self._room is not None

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
        """Stream a text into playout as it is synthesized, a sentence at a time when it is
        long; each sentence's text rides on its first piece, and covers every piece until
        the next sentence's text."""
        if not text.strip():
            return
        for part in _parts(text):
            await self._speak_part(utterance_id, part)

    async def _speak_part(self, utterance_id: str, text: str) -> None:
        first = True
        await self._wait_for_room()
        stream = self._tts.synthesize(text)
        try:
            while True:
                await self._wait_for_room()
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    break
                if not len(chunk):
                    continue
                self._playout.push(utterance_id, chunk, text=text if first else None,
                                   final=False)
                first = False
                self._on_audio()
        finally:
            await stream.aclose()

    async def _wait_for_room(self) -> None:
        """Until playout holds at most `ahead_ms` (having drained to `RESUME_BELOW_S` less,
        once it held more). The playout buffer says so from its pop: no clock here."""
        if self._playout.queued_ms <= self.ahead_ms:
            return
        room = self._room = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if self._room is room:
                self._room = None  # busy again at once (a replay's settling waits for it)
            if not room.done():
                room.set_result(None)

        self._playout.notify_room(max(0.0, self.ahead_ms - RESUME_BELOW_S * 1000), wake)
        try:
            await room
        finally:
            if self._room is room:
                self._room = None
                self._playout.notify_room(0, None)


def _parts(text: str) -> Iterator[str]:
    """The text as one piece, or, when long, sentence by sentence (the gatherer sees it in
    slices, so its buffer stays about a slice long however long the text)."""
    if len(text) <= LONG_TEXT_CHARS:
        yield text
        return
    gatherer = SentenceGatherer()
    for start in range(0, len(text), _SLICE_CHARS):
        yield from gatherer.push(text[start : start + _SLICE_CHARS])
    rest = gatherer.flush()
    if rest and rest.strip():
        yield rest
