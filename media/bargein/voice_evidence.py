"""Is a held sound a voice? What a barge-in pause weighs before duration alone confirms it.

A pause confirms by duration when the recogniser gives no words: sound that lasts
`bargein_confirm_ms` interrupts the agent. Sounds that pass webrtcvad for that long are not
all voices. Two measures over the pause's caller frames (the firing one included) tell the
ones on the dev call flows apart (benchmarks/README.md, session 13):

- voiced frames: a voice gives the detector's *voiced* kind (pitch that moves as a voice's,
  over its recent floor) in at least `confirm_min_voiced` frames of the 640 ms (dev speech:
  4 at the least, 13 at the median); babble under the agent gives one. (A *glide* frame
  fires the detector as a voiced one does but does not count here.)
- flutter: the spread (standard deviation, dB) of frame-to-frame level steps, levels
  clipped 30 dB under the loudest frame. A voice's level moves at syllable rate (dev
  speech: 10.4 dB at most); a bell warbling at 20 Hz, an alarm's fast beeps, a sound that
  switches on and off faster than syllables, flutter by 15-19 dB.
"""

from __future__ import annotations

import math

import numpy as np

from media.bargein.rule import VOICED

_CLIP_DB = 30.0  # levels are clipped this far under the loudest frame of the pause


class VoiceEvidence:
    """Frames of one pause: `add` each, then `voice()` at the point of confirming."""

    __slots__ = ("_levels", "_min_voiced", "_max_flutter_db", "voiced")

    def __init__(self, min_voiced: int, max_flutter_db: float) -> None:
        self._min_voiced = min_voiced
        self._max_flutter_db = max_flutter_db
        self._levels: list[float] = []
        self.voiced = 0

    def add(self, frame: np.ndarray, kind: int) -> None:
        """One caller frame and the detector's kind for it."""
        x = frame.astype(np.float32)
        self._levels.append(10.0 * math.log10(float(np.dot(x, x)) / len(x) + 1.0))
        self.voiced += kind == VOICED

    def flutter_db(self) -> float:
        """Spread of the frame-to-frame level steps (dB), levels clipped under the top."""
        if len(self._levels) < 3:
            return 0.0
        levels = np.array(self._levels)
        steps = np.diff(np.maximum(levels, levels.max() - _CLIP_DB))
        return float(np.std(steps))

    def voice(self) -> bool:
        """Enough voiced frames, and a level that does not flutter."""
        return self.voiced >= self._min_voiced and self.flutter_db() <= self._max_flutter_db
