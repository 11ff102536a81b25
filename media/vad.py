"""Voice activity with hysteresis: webrtcvad on 20 ms frames, start and stop debounced.

`Vad.process(frame)` returns "start" when the caller has been voiced (webrtcvad says speech and
the frame is louder than `min_level_dbfs`) for `start_ms`,
"stop" when a speaker has been unvoiced for `stop_ms`, else None; `speaking` holds the
debounced state. Defaults are measured in benchmarks/bargein.py (see benchmarks/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import webrtcvad

from media.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE

VadEvent = Literal["start", "stop"]


@dataclass
class VadConfig:
    """webrtcvad aggressiveness (0-3) and the start/stop hysteresis in milliseconds.

    Measured on the caller speech of tests/bargein_eval.py without echo
    (`benchmarks/bargein.py --vad`, benchmarks/README.md): aggressiveness 2, 60 ms starts
    48/48 utterances, p50 56 ms / p95 117 ms after onset; 40 ms is 20 ms faster but starts
    on more noises, 100 ms costs 40-110 ms. Aggressiveness 3 is slower (p50 69 ms) for
    little gain. The level floor stops starts on line hiss (without it every case "started"
    on the -65 dBFS floor before the speech). Unvoiced gaps inside an utterance reach
    440 ms, so `stop_ms` 300 may mark a pause; the turn end waits longer (media/turn.py).
    """

    aggressiveness: int = 2
    start_ms: int = 60
    stop_ms: int = 300
    min_level_dbfs: float = -50.0  # quieter frames count as unvoiced (line hiss, codec noise)

    def __post_init__(self) -> None:
        if not 0 <= self.aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {self.aggressiveness}")
        if self.start_ms < FRAME_MS or self.stop_ms < FRAME_MS:
            raise ValueError(f"start_ms and stop_ms must be at least {FRAME_MS} ms")


class Vad:
    """Debounced speech start/stop from webrtcvad, one 20 ms 16 kHz int16 frame at a time."""

    def __init__(self, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self._vad = webrtcvad.Vad(self.config.aggressiveness)
        self._start_frames = -(-self.config.start_ms // FRAME_MS)
        self._stop_frames = -(-self.config.stop_ms // FRAME_MS)
        self._min_energy = FRAME_SAMPLES * 32768.0**2 * 10 ** (self.config.min_level_dbfs / 10)
        self._run = 0  # consecutive frames against the current state
        self._speaking = False
        self.voiced = False  # raw decision of the last processed frame

    @property
    def speaking(self) -> bool:
        return self._speaking

    def is_voiced(self, frame: np.ndarray) -> bool:
        """Raw webrtcvad decision for one frame."""
        if not isinstance(frame, np.ndarray) or frame.shape != (FRAME_SAMPLES,):
            raise ValueError(f"expected a frame of {FRAME_SAMPLES} samples, got "
                             f"{getattr(frame, 'shape', type(frame))}")
        pcm = frame if frame.dtype == np.int16 else frame.astype(np.int16)
        x = pcm.astype(np.float32)
        if float(np.dot(x, x)) < self._min_energy:
            return False  # below the level floor: webrtcvad need not run (most frames)
        return self._vad.is_speech(pcm.tobytes(), SAMPLE_RATE)

    def process(self, frame: np.ndarray) -> VadEvent | None:
        """One frame; "start"/"stop" when the debounced state changes, else None."""
        voiced = self.voiced = self.is_voiced(frame)
        if voiced != self._speaking:
            self._run += 1
        else:
            self._run = 0
        if not self._speaking and self._run >= self._start_frames:
            self._speaking, self._run = True, 0
            return "start"
        if self._speaking and self._run >= self._stop_frames:
            self._speaking, self._run = False, 0
            return "stop"
        return None

    def reset(self) -> None:
        self._run = 0
        self._speaking = False
