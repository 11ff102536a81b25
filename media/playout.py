"""Paced playout of the agent's audio, and what the caller actually heard.

`PlayoutBuffer` is a plain data structure driven by the voice loop's clock: the loop
calls `pop()` once per 20 ms tick and sends the frame it returns. Audio arrives per
utterance, possibly in several pieces (TTS streams), each optionally with its text.
Each utterance's last partial frame is zero-padded, so a frame never mixes two
utterances. An utterance that is not yet `final` and has less than a frame left
waits for more audio (pop returns None) rather than padding mid-word.

What was heard. By default an utterance's played position is what has been popped.
A transport whose far end buffers audio and reports back (Twilio/Plivo marks) can
construct the buffer with `far_end_confirms=True`: then only positions reported via
`confirm(utterance_id, ms)` count as played (the transport labels a mark with
`position()` after sending a frame and confirms it when the mark comes back), and an
utterance counts as finished only once confirmed to its end, or once any later audio is
confirmed (the far end plays in order). Nothing here times out: a transport whose marks
may be lost confirms `position()` itself after a while (the voice loop does, unless
playout is paused: held audio has not played).

Text mapping (an approximation): a text piece covers the audio from the piece it came
with up to the next piece that carries text (audio pushed before the first text
belongs to the first text). Within that span, speech is assumed to advance evenly over
the text's characters, so a word counts as heard once the played fraction of the span
reaches the fraction of characters up to the word's end. TTS pauses, leading silence
and long words skew this by a word or so; it never reports a word whose estimated end
has not been played, and the heard text is always a prefix of the full text.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from media.frames import FRAME_SAMPLES, SAMPLE_RATE

__all__ = ["Heard", "PlayoutBuffer"]

log = logging.getLogger(__name__)

_SAMPLES_PER_MS = SAMPLE_RATE / 1000
_MAX_CONFIRM_MS = 1e12  # a confirmation beyond any utterance (inf, 1e300) is not a position
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class Heard:
    """What the caller heard of one utterance when playout was cut (or finished)."""

    utterance_id: str
    text: str  # the heard prefix of full_text, whole words only
    full_text: str
    played_ms: float
    total_ms: float

    @property
    def complete(self) -> bool:
        return self.played_ms >= self.total_ms


@dataclass(slots=True)
class _Piece:
    start: int  # sample offset within the utterance
    length: int
    text: str | None
    pcm: np.ndarray | None  # dropped once fully popped


@dataclass(slots=True)
class _Utterance:
    uid: str
    pieces: list[_Piece] = field(default_factory=list)
    total: int = 0  # samples pushed
    popped: int = 0  # samples popped
    confirmed: int = 0  # samples the far end reported played
    final: bool = False
    state: str = "queued"  # queued -> done | flushed
    piece_idx: int = 0  # first piece with unpopped audio
    piece_off: int = 0  # offset into that piece


class PlayoutBuffer:
    """Queue of utterances popped as exact 20 ms int16 frames; tracks what was heard."""

    def __init__(self, far_end_confirms: bool = False) -> None:
        self.far_end_confirms = far_end_confirms
        self._queue: deque[_Utterance] = deque()  # not yet done, in play order
        self._known: dict[str, _Utterance] = {}  # every utterance seen (pcm released)
        self._finished: list[str] = []
        self._last: tuple[str, int] | None = None  # (uid, popped) after the last pop
        self._paused = False
        self._watch: tuple[int, Callable[[], None]] | None = None  # (samples, callback)

    # --- input -------------------------------------------------------------------------

    def push(self, utterance_id: str, pcm: np.ndarray, text: str | None = None,
             final: bool = True) -> None:
        """Append a piece of audio (16 kHz int16 mono) and optionally its text.

        Pieces of one utterance play back to back; `final=False` says more will follow.
        Audio for an utterance that was flushed is dropped (a late TTS chunk).
        """
        if not isinstance(utterance_id, str) or not utterance_id:
            raise ValueError(f"utterance_id must be a non-empty str, got {utterance_id!r}")
        if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
            raise TypeError(
                "PlayoutBuffer.push expects a 1-D numpy int16 array at 16 kHz, got "
                f"{type(pcm).__name__}{getattr(pcm, 'dtype', '')}{getattr(pcm, 'shape', '')}"
            )
        if text is not None and not isinstance(text, str):
            raise TypeError(f"text must be str or None, got {type(text).__name__}")
        utt = self._known.get(utterance_id)
        if utt is None:
            utt = _Utterance(utterance_id)
            self._known[utterance_id] = utt
            self._queue.append(utt)
        elif utt.state == "flushed":
            log.debug("dropping %d samples for flushed utterance %s", len(pcm), utterance_id)
            return
        elif utt.final:
            raise ValueError(f"utterance {utterance_id!r} was already pushed with final=True")
        # a read-only array (cached speech) cannot change under us: no copy needed
        kept = pcm if not pcm.flags.writeable else pcm.copy()
        utt.pieces.append(_Piece(utt.total, len(pcm), text or None, kept))
        utt.total += len(pcm)
        utt.final = final
        self._retire()

    def confirm(self, utterance_id: str, ms: float) -> None:
        """The far end reports it has played `utterance_id` up to `ms` (e.g. a mark).

        The far end plays audio in the order it was sent, so this also confirms, in full,
        every utterance that played before `utterance_id`: with two utterances sent back to
        back, the first one's end is often covered by no mark of its own (marks go every
        few frames), and without this it would never count as played."""
        if not isinstance(ms, int | float) or not 0 <= ms < _MAX_CONFIRM_MS:  # NaN too
            log.debug("ignoring confirmation of %r at %r ms", utterance_id, ms)
            return
        utt = self._known.get(utterance_id)
        if utt is None or utt.state == "flushed":
            log.debug("ignoring confirmation for %s utterance %r",
                      "unknown" if utt is None else "flushed", utterance_id)
            return
        if utt.state == "done":
            return  # (a late or repeated mark: it and everything before it has retired)
        pos = min(int(round(ms * _SAMPLES_PER_MS)), utt.popped)
        if abs(utt.popped / _SAMPLES_PER_MS - ms) <= 0.5:
            # (labels give whole ms: this mark stands where the last frame sent ended. An
            # utterance whose length rounded down was otherwise never confirmed to its end,
            # and the agent counted as talking until the stall timeout)
            pos = utt.popped
        utt.confirmed = max(utt.confirmed, pos)
        for earlier in self._queue:  # in play order: all of these went out before `utt`
            if earlier is utt:
                break
            earlier.confirmed = earlier.popped
        self._retire()

    # --- the clock tick ----------------------------------------------------------------

    def pop(self) -> np.ndarray | None:
        """One 20 ms frame to send now, or None when there is nothing to play yet (or
        playout is paused)."""
        if self._paused:
            return None
        utt = next((u for u in self._queue if u.popped < u.total or not u.final), None)
        if utt is None:
            return None
        left = utt.total - utt.popped
        if left == 0 or (left < FRAME_SAMPLES and not utt.final):
            return None  # waiting for more audio of this utterance
        piece = utt.pieces[utt.piece_idx] if utt.piece_idx < len(utt.pieces) else None
        off = utt.piece_off
        if piece is not None and piece.pcm is not None and piece.length - off > FRAME_SAMPLES:
            # the common case: a whole frame inside one piece, a view of it
            frame, filled = piece.pcm[off : off + FRAME_SAMPLES], FRAME_SAMPLES
            utt.piece_off = off + FRAME_SAMPLES
        else:
            frame, filled = _gather_frame(utt)
        utt.popped += filled
        self._last = (utt.uid, utt.popped)
        self._retire()
        if self._watch is not None and self._queued_samples() <= self._watch[0]:
            self._fire_watch()
        return frame

    def position(self) -> tuple[str, float] | None:
        """(utterance_id, ms) reached by the last popped frame: a label for a far-end mark."""
        if self._last is None:
            return None
        return self._last[0], self._last[1] / _SAMPLES_PER_MS

    @property
    def at_utterance_end(self) -> bool:
        """The last popped frame holds the last audio pushed so far for its utterance: a
        far-end mark there confirms the utterance to its end (or as far as it has come)."""
        if self._last is None:
            return False
        uid, popped = self._last
        return popped >= self._known[uid].total

    def drain_finished(self) -> list[str]:
        """Ids of utterances that finished playing since the last call, in order."""
        done, self._finished = self._finished, []
        return done

    def flush(self) -> list[Heard]:
        """Drop all queued audio at once (barge-in). Returns what was heard of each
        utterance that had started playing."""
        heard = []
        for utt in self._queue:
            if utt.popped > 0:
                heard.append(self._heard(utt))
            utt.state = "flushed"
            utt.final = True
            for piece in utt.pieces:
                piece.pcm = None
        self._queue.clear()
        self._last = None
        self._paused = False
        self._fire_watch()
        return heard

    def pause(self) -> None:
        """Hold playout where it is (a possible barge-in): `pop` returns None, nothing is
        dropped, and what was heard stays what was popped (or confirmed) so far."""
        self._paused = True

    def resume(self) -> None:
        """Go on from exactly where `pause` held."""
        self._paused = False

    def notify_room(self, ms: float, callback: Callable[[], None] | None) -> None:
        """Call `callback` once, when a pop leaves at most `ms` of audio queued (or a flush
        leaves none): a producer that synthesises ahead waits for room this way, at the pace
        of whatever clock pops. One watcher at a time; `None` removes it."""
        self._watch = None if callback is None else (int(ms * _SAMPLES_PER_MS), callback)

    def _fire_watch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch[1]()

    # --- state -------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def is_playing(self) -> bool:
        """True while any utterance is queued, playing, awaiting more audio or confirmation."""
        return bool(self._queue)

    @property
    def queued_ms(self) -> float:
        """Audio pushed but not yet popped."""
        return self._queued_samples() / _SAMPLES_PER_MS

    def _queued_samples(self) -> int:
        return sum(u.total - u.popped for u in self._queue)

    def played_ms(self, utterance_id: str) -> float:
        return self._played(self._get(utterance_id)) / _SAMPLES_PER_MS

    def heard_text(self, utterance_id: str) -> str:
        return self._heard(self._get(utterance_id)).text

    def heard(self, utterance_id: str) -> Heard:
        return self._heard(self._get(utterance_id))

    # --- internals ---------------------------------------------------------------------

    def _get(self, utterance_id: str) -> _Utterance:
        try:
            return self._known[utterance_id]
        except KeyError:
            raise KeyError(f"unknown utterance {utterance_id!r}") from None

    def _played(self, utt: _Utterance) -> int:
        return utt.confirmed if self.far_end_confirms else utt.popped

    def _retire(self) -> None:
        """Move finished utterances from the head of the queue to the finished list."""
        while self._queue:
            utt = self._queue[0]
            if not (utt.final and self._played(utt) >= utt.total):
                break
            utt.state = "done"
            self._queue.popleft()
            self._finished.append(utt.uid)

    def _heard(self, utt: _Utterance) -> Heard:
        full, cut = _heard_cut(utt, self._played(utt))
        return Heard(utt.uid, full[:cut].rstrip(), full, self._played(utt) / _SAMPLES_PER_MS,
                     utt.total / _SAMPLES_PER_MS)


def _heard_cut(utt: _Utterance, played: int) -> tuple[str, int]:
    """Full text of the utterance and the character index where the heard part ends."""
    # Text segments: (text, audio start, audio end); audio before the first text joins it.
    marks = [(p.start, p.text) for p in utt.pieces if p.text]
    if not marks:
        return "", 0
    bounds = [0] + [start for start, _ in marks[1:]] + [utt.total]
    full, cut = "", 0
    everything = utt.state == "done" or (utt.final and played >= utt.total and played > 0)
    for i, (_, text) in enumerate(marks):
        if full and not full[-1].isspace() and not text[0].isspace():
            full += " "
        offset = len(full)
        full += text
        start, end = bounds[i], bounds[i + 1]
        if everything or played >= end > start or (end == start and played > start):
            cut = len(full)
        elif start < played < end:
            words = [m.span() for m in _WORD.finditer(text)]
            if not words:
                continue
            first, last = words[0][0], words[-1][1]
            frac = (played - start) / (end - start)
            for _, w_end in words:
                if (w_end - first) <= frac * (last - first) + 1e-9:
                    cut = offset + w_end
                else:
                    break
    return full, cut


def _gather_frame(utt: _Utterance) -> tuple[np.ndarray, int]:
    """The next frame of `utt` from the pieces it spans (silence after a final partial
    one); the samples taken. Pieces used up release their audio."""
    frame = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    filled = 0
    while filled < FRAME_SAMPLES and utt.piece_idx < len(utt.pieces):
        piece = utt.pieces[utt.piece_idx]
        take = min(FRAME_SAMPLES - filled, piece.length - utt.piece_off)
        if take > 0:
            assert piece.pcm is not None
            frame[filled : filled + take] = piece.pcm[utt.piece_off : utt.piece_off + take]
            filled += take
            utt.piece_off += take
        if utt.piece_off >= piece.length:
            piece.pcm = None
            utt.piece_idx += 1
            utt.piece_off = 0
    return frame, filled

