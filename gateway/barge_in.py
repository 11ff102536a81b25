"""Barge-in: the caller talks over the agent. Pause first, interrupt when it is real.

The far-end clock pairs each caller frame with the agent frame that played during it (its
echo), so the detector (`media.bargein`) can hear the caller through that echo. When the
detector fires, or sooner calls for an eager pause, `BargeIn` pauses the agent's audio
(held, nothing dropped) and watches the caller: speech that goes on for
`bargein_confirm_ms` from the pause once the detector has fired, or a recogniser word
that is not a backchannel, confirms it, and `Call` interrupts the agent; `bargein_resume_ms`
of quiet before that resumes the agent where it paused, and the session never hears of it.
A pause that comes within `RELINK_MS` of such a resume goes on counting from the first
(the comma of "wait, stop" is as long as the quiet that resumes).

`Call` drives it, per caller frame (`caller_arrived`, `detect`, `decide`, `confirm`) and
per agent frame (`agent_frame`, `resume_if_overdue`); the caller's frames it holds, and the
recogniser it asks for words, are the listening side's (`Ears`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from media.bargein import BargeInDetector
from media.bargein.voice_evidence import VoiceEvidence
from media.far_end_clock import FarEndClock
from media.frames import FRAME_MS, FRAME_S, SAMPLE_RATE
from media.playout import PlayoutBuffer

if TYPE_CHECKING:
    from gateway.call import CallSettings
    from gateway.call_owner import CallOwner

_WORDS = re.compile(r"[a-z0-9']+")
# A pause this soon after a resume on quiet continues it: espeak's comma ("wait, stop" at
# 140 words a minute) is 250-400 ms of quiet, so "wait" resumed and "stop" alone was too
# short to confirm (benchmarks/README.md, session 15).
RELINK_MS = 400


@dataclass(slots=True)
class Pause:
    """A barge-in not yet confirmed: the agent's audio is held."""

    t: float  # when it paused (the call's elapsed time): the barge-in latency ends here
    words: bool  # the recogniser hears the caller meanwhile
    fired: bool  # the detector fired (else the pause is an eager one, so far)
    frames: int = 0  # caller frames since the pause, the firing one included
    held: int = 0  # of them, kept in the preroll for the recogniser (not fed yet)
    quiet: int = 0  # caller frames in a row with no voice
    evidence: VoiceEvidence | None = None  # what it heard, from the fire (`VoiceEvidence`)
    ended: float = 0.0  # when it resumed (a pause that resumed on quiet may go on)


def paused_ms(paused: float, now: float) -> float:
    """How long a pause lasted (ms), as the difference of the two times as the timeline
    gives them (0.1 ms), so that an event's time less its `paused_ms` is the pause's."""
    return round(round(now * 1000, 1) - round(paused * 1000, 1), 1)


class Ears(Protocol):
    """What a pause needs of the call's listening side."""

    def hold(self, frame: np.ndarray) -> None:
        """Keep a caller frame in the preroll (the recogniser may have it later)."""

    def take_held(self) -> list[np.ndarray]:
        """The preroll's last frames before a barge-in; the preroll is emptied."""
        ...

    def hear(self, frame: np.ndarray) -> Iterable[Any] | None:
        """Feed the recogniser a frame: its interim results, if any."""

    def voiced(self, frame: np.ndarray) -> bool:
        """The plain VAD's decision on one frame."""
        ...

    def forget_turn(self) -> None:
        """End the recogniser's utterance (it heard a backchannel), unreported."""


class BargeIn:
    """One call's barge-in: the far-end clock, the detector and the pause."""

    def __init__(self, owner: CallOwner, settings: CallSettings, playout: PlayoutBuffer,
                 ears: Ears, words: bool) -> None:
        self._owner = owner
        self._settings = settings
        self._playout = playout
        self._ears = ears
        self._words = words  # a pause asks the recogniser for words
        self.detector = BargeInDetector(settings.bargein)
        self._far_end = FarEndClock()  # frame numbers, to pair caller frames with the echo
        self.pause: Pause | None = None
        self._t: float | None = None  # the time of the caller frame being decided
        self._resumed: Pause | None = None  # the last pause that resumed on quiet (`RELINK_MS`)

    # -- the clock and the detector -------------------------------------------------------
    def caller_arrived(self, t: float) -> int:
        """Every caller frame (muted too), which arrived at `t`: its number."""
        return self._far_end.caller_frame(t)

    def agent_frame(self, frame: np.ndarray, sent: float) -> None:
        """An agent frame sent at `sent`: the detector learns when it plays (its echo)."""
        slot = self._far_end.agent_frame(sent)
        self.detector.agent_frame(frame, slot * FRAME_S)  # plays during caller frame `slot`

    def detect(self, frame: np.ndarray, n: int) -> bool:
        """Caller frame number `n` while the agent plays: True when the detector fires."""
        return self.detector.caller_frame(frame, (n + 1) * FRAME_S)

    @property
    def hears_sound(self) -> bool:
        """The detector's gate let the last caller frame through."""
        last = self.detector.last
        return last is not None and last.active

    def agent_quiet(self) -> None:
        """The agent's audio ran out: the detector starts afresh."""
        self._resumed = None
        self.detector.reset()

    # -- the pause ------------------------------------------------------------------------
    def decide(self, frame: np.ndarray, fired: bool, t: float) -> bool:
        """One caller frame the detector has seen (`fired` or not), heard at `t` (the call's
        elapsed seconds): True when it confirms a barge-in (then `confirm`). Pauses at a
        fire (or with `bargein_confirm_ms` 0, confirms at once), watches the caller while
        paused, keeps the other frames in the preroll. Its times are `t`, not when the work
        is done, so that a live call under load decides as its replay does."""
        self._t = t
        try:
            return self._decide(frame, fired)
        finally:
            self._t = None

    def _now(self) -> float:
        """The time of the caller frame being decided, or (none) the call's clock."""
        return self._owner.elapsed() if self._t is None else self._t

    def _decide(self, frame: np.ndarray, fired: bool) -> bool:
        if self.pause is None:
            confirming = self._settings.bargein_confirm_ms > 0
            if not (fired or (confirming and self.detector.eager)):
                self._ears.hold(frame)
                return False
            if confirming:
                return self._pause_now(frame, fired)
            return True
        if fired and not self.pause.fired:  # an eager pause: weigh the sound from the fire
            self.pause.fired = True
            self.pause.evidence = VoiceEvidence(self._settings.bargein)
        return self._pause_frame(frame)

    def confirm(self, t: float) -> Pause:
        """The barge-in is real, confirmed by the frame heard at `t`: the pause is over (one
        at `t` if there was none: `bargein_confirm_ms` 0 interrupts at the fire)."""
        pause, self.pause = self.pause, None
        if pause is None:
            pause = Pause(t, False, True)
            self._owner.mark("bargein.pause", at=t)
        return pause

    def resume(self, reason: str) -> None:
        """Not an interruption after all (a backchannel, a cough, a noise): the agent's audio
        goes on from where it paused, and the session never hears of it."""
        pause, self.pause = self.pause, None
        if pause is None:
            return
        owner = self._owner
        self._playout.resume()
        self.detector.reset()  # (so that the caller's next words can barge in again)
        pause.ended = now = self._now()
        self._resumed = pause if reason == "quiet" else None
        owner.turns.resumed(now)
        owner.mark("bargein.resume", at=now, reason=reason,
                   paused_ms=paused_ms(pause.t, now))
        if pause.words:
            self._ears.forget_turn()

    def resume_if_overdue(self) -> None:
        """A pause outlives any decision when caller frames stop coming (a SIP phone's
        silence suppression sends none): then the sound is over."""
        pause = self.pause
        if pause is None:
            return
        cfg = self._settings
        limit = (cfg.bargein_confirm_ms + cfg.bargein_resume_ms + 100) / 1000
        if self._owner.elapsed() - pause.t > limit:
            self.resume("no caller audio")

    def drop(self) -> None:
        """The agent's audio was flushed: no pause, and the detector starts afresh."""
        self.pause = self._resumed = None
        self.detector.reset()

    def _pause_now(self, frame: np.ndarray, fired: bool) -> bool:
        """The detector fired (`fired`) or called for an eager pause: hold the agent's audio
        (nothing more is sent from the next tick on; nothing is dropped) and start watching
        the caller. True if confirmed at once (the recogniser already has words)."""
        owner = self._owner
        self._playout.pause()
        self.pause = pause = Pause(self._now(), self._words, fired,
                                   evidence=VoiceEvidence(self._settings.bargein))
        last, self._resumed = self._resumed, None
        if last is not None and not pause.words and (pause.t - last.ended) * 1000 <= RELINK_MS:
            # the sound goes on after a short gap: count from the first pause
            gap = round((pause.t - last.ended) / FRAME_S)
            pause.frames, pause.held = last.frames + gap, last.held + gap
            if last.fired:  # (its evidence counts from a fire, as a pause's does)
                pause.fired, pause.evidence = True, last.evidence
        owner.mark("bargein.pause", at=pause.t)
        owner.turns.paused(pause.t)
        words = False
        if pause.words:  # the recogniser hears the caller from 500 ms before the fire
            for f in self._ears.take_held():
                words = self._words_confirm_in(self._ears.hear(f)) or words
        return self._pause_frame(frame) or words

    def _pause_frame(self, frame: np.ndarray) -> bool:
        """One caller frame while paused (the detector has seen it): True when it confirms
        the barge-in; resumes the agent when the sound is over without confirming it."""
        pause = self.pause
        assert pause is not None
        cfg = self._settings
        pause.frames += 1
        last = self.detector.last
        evidence = pause.evidence
        assert evidence is not None  # (only a pause `confirm` makes at once has none)
        evidence.add(frame, self.detector.last_kind, None if last is None else last.level_dbfs)
        if (self._now() - pause.t) * 1000 > self._echo_ends_ms():
            # the agent's audio stopped longer ago than its echo lasts: the caller channel
            # is the caller alone, and the plain VAD judges it (the detector's gate would
            # still weigh it against an echo that is gone)
            voiced = self._ears.voiced(frame)
        else:
            voiced = last is not None and last.active and last.vad
        pause.quiet = 0 if voiced else pause.quiet + 1
        if pause.words and self._words_confirm_in(self._ears.hear(frame)):
            return True
        if voiced and pause.frames * FRAME_MS >= cfg.bargein_confirm_ms:
            if pause.fired and evidence.voice():
                self._owner.mark("bargein.confirm", at=self._now(), reason="speech")
                return True
            self.resume("not a voice")
            self._ears.hold(frame)
            return False
        if pause.quiet * FRAME_MS >= cfg.bargein_resume_ms:
            self.resume("quiet")
            self._ears.hold(frame)
        elif not pause.words:
            self._ears.hold(frame)
            pause.held += 1
        return False

    def _echo_ends_ms(self) -> float:
        """How long after the agent's audio stops its echo may still come: the learned echo
        path's last tap, or (none learned yet) the longest echo the canceller looks for;
        a frame more either way."""
        end = self.detector.echo_canceller.echo_end()
        if end is None:
            return self._settings.bargein.echo_tail_ms + FRAME_MS
        return end * 1000 / SAMPLE_RATE + FRAME_MS

    def _words_confirm_in(self, results: Iterable[Any] | None) -> bool:
        """True (marked) when a recogniser result holds a word that is not a backchannel."""
        confirmed = False
        for result in results or ():
            text = getattr(result, "text", "")
            self._owner.mark("stt.partial", at=self._now(), text=text)
            if not confirmed and self._not_backchannel(text):
                self._owner.mark("bargein.confirm", at=self._now(), reason="words", text=text)
                confirmed = True
        return confirmed

    def _not_backchannel(self, text: str) -> bool:
        words = _WORDS.findall(text.lower())
        return any(w not in self._settings.backchannel_words for w in words)
