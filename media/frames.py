"""The one internal audio shape: signed 16-bit mono PCM as numpy int16, 16 kHz, 20 ms frames."""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000
FRAME_MS = 20
FRAME_S = FRAME_MS / 1000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000  # 320
FRAME_BYTES = FRAME_SAMPLES * 2

SILENCE = np.zeros(FRAME_SAMPLES, dtype=np.int16)
SILENCE.setflags(write=False)


def samples_for_ms(ms: float, rate: int = SAMPLE_RATE) -> int:
    """Number of samples in `ms` milliseconds at `rate`."""
    return int(round(rate * ms / 1000))


def split_frames(pcm: np.ndarray, pad: bool = True) -> list[np.ndarray]:
    """Cut 16 kHz int16 audio into 20 ms frames; the tail is zero-padded (or dropped)."""
    n = len(pcm) // FRAME_SAMPLES
    frames = [pcm[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES] for i in range(n)]
    rest = len(pcm) - n * FRAME_SAMPLES
    if rest and pad:
        tail = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        tail[:rest] = pcm[n * FRAME_SAMPLES :]
        frames.append(tail)
    return frames


def rms_dbfs(pcm: np.ndarray) -> float:
    """RMS level in dB relative to int16 full scale (-inf for digital silence)."""
    if len(pcm) == 0:
        return float("-inf")
    x = pcm.astype(np.float32)
    power = float(np.dot(x, x)) / len(x)
    if power <= 0.0:
        return float("-inf")
    return 10.0 * np.log10(power / (32768.0**2))


class FrameChunker:
    """Re-chunks a stream of int16 arrays of any length into exact 20 ms frames."""

    def __init__(self, frame_samples: int = FRAME_SAMPLES) -> None:
        self.frame_samples = frame_samples
        self._buf = np.zeros(0, dtype=np.int16)

    def push(self, pcm: np.ndarray) -> list[np.ndarray]:
        """Add audio; return every complete frame now available."""
        if len(pcm) == self.frame_samples and not len(self._buf):
            return [pcm]  # the usual case: a whole frame in, nothing held back
        if len(self._buf):
            pcm = np.concatenate((self._buf, pcm))
        n = len(pcm) // self.frame_samples
        cut = n * self.frame_samples
        frames = [pcm[i : i + self.frame_samples] for i in range(0, cut, self.frame_samples)]
        self._buf = pcm[cut:].copy()
        return frames

    def flush(self) -> list[np.ndarray]:
        """Return the remainder zero-padded to one frame (or nothing) and empty the buffer."""
        if not len(self._buf):
            return []
        tail = np.zeros(self.frame_samples, dtype=np.int16)
        tail[: len(self._buf)] = self._buf
        self._buf = np.zeros(0, dtype=np.int16)
        return [tail]

    def clear(self) -> None:
        self._buf = np.zeros(0, dtype=np.int16)
