"""Test signals and measurements."""

from __future__ import annotations

import numpy as np

from media.frames import SAMPLE_RATE

__all__ = ["DTMF_FREQS", "at", "detect", "goertzel_amplitude"]

DTMF_FREQS = (697, 770, 852, 941, 1209, 1336, 1477, 1633)  # the keypad's eight tones


def at(ms: int, pcm: np.ndarray, total_ms: int) -> np.ndarray:
    """Place `pcm` at `ms` in a silent track of `total_ms`."""
    out = np.zeros(total_ms * SAMPLE_RATE // 1000, dtype=np.int16)
    start = ms * SAMPLE_RATE // 1000
    n = min(len(pcm), len(out) - start)
    out[start : start + n] = pcm[:n]
    return out


def goertzel_amplitude(x: np.ndarray, freq: float, rate: int = SAMPLE_RATE) -> float:
    """Amplitude of the `freq` component of `x` (Goertzel, Hann-windowed)."""
    w = x.astype(np.float64) * np.hanning(len(x))
    coeff = 2 * np.cos(2 * np.pi * freq / rate)
    s1 = s2 = 0.0
    for v in w:
        s1, s2 = v + coeff * s1 - s2, s1
    power = s1 * s1 + s2 * s2 - coeff * s1 * s2
    return 2 * np.sqrt(max(power, 0.0)) / np.sum(np.hanning(len(x)))


def detect(x: np.ndarray) -> tuple[list[int], np.ndarray]:
    """The two loudest keypad frequencies in `x` (sorted), and all eight amplitudes."""
    amps = np.array([goertzel_amplitude(x, f) for f in DTMF_FREQS])
    return sorted(DTMF_FREQS[i] for i in np.argsort(amps)[-2:]), amps
