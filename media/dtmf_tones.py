"""DTMF key presses as audio (ITU-T Q.23 dual tones), for sending digits in-band.

Each key is one low-group and one high-group sine, 100 ms of tone then 100 ms of
silence (Q.24 receivers need at least 40 ms of each). Levels, as peak amplitude
relative to int16 full scale: low group -10 dBFS, high group -8 dBFS; the 2 dB
"twist" towards the high group is what telephone sets send (the line attenuates high
frequencies more), well within the 4 dB receivers must accept. The two peaks add
to -2.9 dBFS, so nothing clips, also after G.711. Tone edges are 5 ms
raised-cosine ramps: a hard start would splatter energy into the other keys' bands.
"""

from __future__ import annotations

import numpy as np

from media.frames import SAMPLE_RATE
from runtime.dtmf import DTMF_KEYS

__all__ = ["DTMF_KEYS", "HIGH_DBFS", "LOW_DBFS", "dtmf_frequencies", "dtmf_tones"]

_ROWS = (697, 770, 852, 941)  # low group, Hz
_COLUMNS = (1209, 1336, 1477, 1633)  # high group, Hz
_KEYPAD = ("123A", "456B", "789C", "*0#D")
LOW_DBFS = -10.0
HIGH_DBFS = -8.0
RAMP_MS = 5.0


def dtmf_frequencies(key: str) -> tuple[int, int]:
    """(low, high) frequencies in Hz of one key; ValueError for anything else."""
    for row, keys in enumerate(_KEYPAD):
        col = keys.find(key.upper()) if len(key) == 1 else -1
        if col >= 0:
            return _ROWS[row], _COLUMNS[col]
    raise ValueError(f"not a DTMF key: {key!r} (keys are 0-9 * # A-D)")


def dtmf_tones(digits: str, rate: int = SAMPLE_RATE, tone_ms: int = 100,
               gap_ms: int = 100) -> np.ndarray:
    """The audio of pressing `digits` in turn: int16 mono at `rate`, each key's tone
    followed by its gap (so the result ends in silence)."""
    pairs = [dtmf_frequencies(d) for d in digits]  # validate everything first
    n_tone = rate * tone_ms // 1000
    n_gap = rate * gap_ms // 1000
    t = np.arange(n_tone) / rate
    ramp = min(n_tone // 2, int(rate * RAMP_MS / 1000))
    envelope = np.ones(n_tone)
    if ramp:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        envelope[:ramp], envelope[n_tone - ramp :] = edge, edge[::-1]
    low_amp = 32767 * 10 ** (LOW_DBFS / 20)
    high_amp = 32767 * 10 ** (HIGH_DBFS / 20)
    out = np.zeros(len(pairs) * (n_tone + n_gap), dtype=np.int16)
    for i, (low, high) in enumerate(pairs):
        tone = low_amp * np.sin(2 * np.pi * low * t) + high_amp * np.sin(2 * np.pi * high * t)
        start = i * (n_tone + n_gap)
        out[start : start + n_tone] = np.round(tone * envelope).astype(np.int16)
    return out
