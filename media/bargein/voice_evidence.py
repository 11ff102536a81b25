"""Is a held sound a voice? What a barge-in pause weighs before duration alone confirms it.

A pause confirms by duration when the recogniser gives no words: sound that lasts
`bargein_confirm_ms` interrupts the agent. Sounds that pass webrtcvad for that long are not
all voices. Measures over the pause's caller frames from the detector's fire (the firing one
included; an eager pause's frames before it are not weighed), set on the
dev call flows and on fresh draws of music on hold and babble (benchmarks/README.md,
sessions 13 and 14):

- voiced frames: a voice gives the detector's *voiced* kind (pitch that moves as a voice's,
  over its recent floor) in at least `confirm_min_voiced` frames up to the confirmation (dev speech:
  4 at the least, 13 at the median); babble under the agent gives one. (A *glide* frame
  fires the detector as a voiced one does but does not count here.)
- flutter: the spread (standard deviation, dB) of frame-to-frame level steps, levels
  clipped 30 dB under the loudest frame. A voice's level moves at syllable rate (dev
  speech: 10.4 dB at most); a bell warbling at 20 Hz, an alarm's fast beeps, a sound that
  switches on and off faster than syllables, flutter by 15-19 dB.
- one voice, not music or a room: either the sound dipped (a frame whose residual, the
  echo taken out, is `confirm_dip_db` under the pause's 90th-percentile level: one voice
  stops between syllables and words, music and a room of voices go on), or it ran on as a
  fluent voice does (at least `confirm_fluent_voiced` voiced or glide frames and at most
  half as many tonal ones: music's notes are tonal, babble gives few voiced frames). On fresh draws
  of recorded music on hold and babble, 16 of 30 pauses passed the first two measures;
  3 pass this one. Of the dev call flows' real barge-ins, 60 of the 61 first pauses that
  confirmed before still do (the other resumes and pauses again).
"""

from __future__ import annotations

import math

import numpy as np

from media.bargein.config import BargeInConfig
from media.bargein.rule import GLIDE, TONAL, VOICED

_CLIP_DB = 30.0  # levels are clipped this far under the loudest frame of the pause
_FULL_DB = 10.0 * math.log10(32768.0**2)  # an int16 frame's level in dB -> dBFS


class VoiceEvidence:
    """Frames of one pause: `add` each, then `voice()` at the point of confirming."""

    __slots__ = ("_cfg", "_levels", "_residual", "glides", "tonal", "voiced")

    def __init__(self, config: BargeInConfig) -> None:
        self._cfg = config
        self._levels: list[float] = []  # each frame's own level (dB)
        self._residual: list[float] = []  # the detector's residual level (dBFS)
        self.voiced = 0
        self.tonal = 0
        self.glides = 0

    def add(self, frame: np.ndarray, kind: int, residual_dbfs: float | None = None) -> None:
        """One caller frame, the detector's kind for it and its residual level (None: the
        frame's own level, as on a line with no echo)."""
        x = frame.astype(np.float32)
        level = 10.0 * math.log10(float(np.dot(x, x)) / len(x) + 1.0)
        self._levels.append(level)
        self._residual.append(level - _FULL_DB if residual_dbfs is None else residual_dbfs)
        self.voiced += kind == VOICED
        self.tonal += kind == TONAL
        self.glides += kind == GLIDE

    def flutter_db(self) -> float:
        """Spread of the frame-to-frame level steps (dB), levels clipped under the top."""
        if len(self._levels) < 3:
            return 0.0
        levels = np.array(self._levels)
        steps = np.diff(np.maximum(levels, levels.max() - _CLIP_DB))
        return float(np.std(steps))

    def dips(self) -> int:
        """Frames `confirm_dip_db` or more under the pause's 90th-percentile residual."""
        if not self._residual:
            return 0
        levels = np.array(self._residual)
        top = float(np.percentile(levels, 90))
        return int(np.count_nonzero(levels <= top - self._cfg.confirm_dip_db))

    def fluent(self) -> bool:
        """Voiced frames enough for a voice that runs on, and few tonal ones beside them."""
        pitched = self.voiced + self.glides
        return pitched >= self._cfg.confirm_fluent_voiced and 2 * self.tonal <= pitched

    def voice(self) -> bool:
        """Enough voiced frames, a level that does not flutter, and one voice's shape: it
        dipped, or it ran on fluently."""
        cfg = self._cfg
        return (self.voiced >= cfg.confirm_min_voiced
                and self.flutter_db() <= cfg.confirm_max_flutter_db
                and (self.dips() > 0 or self.fluent()))
