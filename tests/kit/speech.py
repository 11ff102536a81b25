"""Test speech made offline with espeak-ng, as 16 kHz int16 numpy arrays (cached per process)."""

from __future__ import annotations

import functools
import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
import soxr


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


# a test (or, as `pytestmark`, a module) that needs espeak-ng
needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng is not installed")


@functools.lru_cache(maxsize=256)
def _espeak(text: str, voice: str, speed: int, pitch: int) -> bytes:
    if not espeak_available():
        raise RuntimeError("espeak-ng is not installed (make system-deps installs it)")
    out = subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    return out


def speech(text: str, voice: str = "en-us", speed: int = 160, pitch: int = 50,
           rate: int = 16_000) -> np.ndarray:
    """Speak `text` with espeak-ng and return mono int16 PCM at `rate`."""
    wav = _espeak(text, voice, speed, pitch)
    with wave.open(io.BytesIO(wav)) as w:
        src_rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    if src_rate == rate:
        return pcm.copy()
    out = soxr.resample(pcm.astype(np.float32) / 32768.0, src_rate, rate)
    return np.clip(np.round(out * 32768.0), -32768, 32767).astype(np.int16)


def trim_silence(pcm: np.ndarray, threshold: int = 200) -> np.ndarray:
    """Drop leading and trailing near-silence."""
    idx = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    if len(idx) == 0:
        return pcm[:0]
    return pcm[idx[0] : idx[-1] + 1]
