"""Speech-to-text interface: one engine per process, one stream per caller turn sequence.

    engine = SomeSTT(...)          # checks at start-up: RuntimeError if engine/model missing
    stream = engine.new_stream()   # one per call
    for frame in caller_frames:    # 16 kHz int16, 20 ms (320 samples)
        partials = stream.feed(frame)       # list[Transcript], may be empty
    final = stream.end_of_turn()   # Transcript | None; the stream is ready for the next turn
    stream.close()

Design choice: the stream is synchronous and must not block. The voice loop is async but
calls `feed` once per frame from its own task, and a per-frame `await` would buy nothing
for a local C engine (pocketsphinx decodes in about 1-2% of real time). A cloud engine
(media/stt/deepgram.py) fits the same shape: one connection and one sender/receiver task
pair per utterance (never per frame), `feed` only buffers the frame and returns the
transcripts received so far.
Cloud services finalise during the trailing silence that the turn detector waits for
anyway. Where an engine must wait for its final result, it offers `end_of_turn_async()`
instead: called synchronously, it closes the turn at once (frames fed afterwards belong
to the next turn) and returns an awaitable of the final transcript. The voice loop awaits
it in a task of its own, so caller frames (VAD, barge-in) keep flowing meanwhile;
`finish_turn(stream)` prefers it and falls back to the synchronous call.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

__all__ = ["Transcript", "SttStream", "SttEngine", "AsyncEndOfTurn", "check_frame",
           "finish_turn"]


@dataclass(frozen=True, slots=True)
class Transcript:
    """Recognised text; `is_final` is False for a partial hypothesis that may still change."""

    text: str
    is_final: bool


class SttStream(Protocol):
    """One caller's recognition state."""

    def feed(self, frame: np.ndarray) -> list[Transcript]:
        """Take one 20 ms frame of 16 kHz int16 audio; return new partial/final transcripts."""
        ...

    def end_of_turn(self) -> Transcript | None:
        """The caller's turn ended: return its final transcript (None if nothing was
        recognised) and get ready for the next utterance."""
        ...

    def close(self) -> None:
        """Release the stream; further calls are errors."""
        ...


class SttEngine(Protocol):
    """Created once per process; cheap `new_stream()` per call."""

    sample_rate: int  # always 16000: frames are media.frames' shape

    def check(self) -> None:
        """Raise RuntimeError naming what is missing and how to install it."""
        ...

    def new_stream(self) -> SttStream: ...


@runtime_checkable
class AsyncEndOfTurn(Protocol):
    """Optional, for engines that must wait (network) for the final result of a turn.

    The call itself ends the turn synchronously; the result arrives through the awaitable."""

    def end_of_turn_async(self) -> Awaitable[Transcript | None]: ...


def check_frame(frame: object) -> None:
    """What every stream's `feed` requires: a 1-D int16 array (TypeError otherwise)."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
        raise TypeError("feed() expects a 1-D numpy int16 array of 16 kHz audio")


async def finish_turn(stream: SttStream) -> Transcript | None:
    """End the turn on any stream: awaits `end_of_turn_async` when the stream has it."""
    if isinstance(stream, AsyncEndOfTurn):
        return await stream.end_of_turn_async()
    return stream.end_of_turn()
