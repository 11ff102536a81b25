"""What the detector measures in a caller frame: `FrameFeatures`, and the pitch measures
(periodicity of a 10 ms template and of the whole frame, a low-passed copy's)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from media.bargein.canceller import _N, _cumsum
from media.frames import SAMPLE_RATE
from media.numpy_c import correlate as _correlate
from media.numpy_c import einsum as _einsum


@dataclass
class FrameFeatures:
    """What the detector measured in one caller frame (input of `DecisionRule`).

    Frames stopped by the gate (`active` False) carry only the three levels.
    """

    level_dbfs: float  # residual level
    guard_db: float  # residual minus the expected leftover echo
    rise_db: float  # residual level above the quietest of the last `floor_ms`
    active: bool  # passed the gate
    vad: bool = False  # webrtcvad on the residual
    periodicity: float = 0.0  # 10 ms template, best pitch lag
    frame_periodicity: float = 0.0  # whole frame at that lag
    pitch_lag: float = 0.0  # samples, interpolated
    peakiness: float = 0.0  # energy share of the 6 strongest 50 Hz bins, 300-3400 Hz
    stationarity: float = 0.0  # spectrum vs the frame before (0 after a gated frame)
    low_periodicity: float = 0.0  # `periodicity` of the residual low-passed
    low_frame_periodicity: float = 0.0  # `frame_periodicity` of it
    low_pitch_lag: float = 0.0  # `pitch_lag` of it
    echo_lag: float = 0.0  # pitch lag of the agent audio whose echo arrives now (0: none)
    rumble: float = 0.0  # energy share below 175 Hz (a thump, a door: not a voice)
    echo_share: float = -1.0  # share of the residual the agent's audio explains (-1: untested)



_LOW_TAPS = 65


@functools.cache
def _lowpass(cutoff_hz: float) -> np.ndarray:
    """Windowed-sinc low-pass FIR (`_LOW_TAPS` taps, Hann); read-only, made once per cutoff
    (every call's detector uses it)."""
    n = np.arange(_LOW_TAPS) - (_LOW_TAPS - 1) / 2
    h = 2 * cutoff_hz / SAMPLE_RATE * np.sinc(2 * cutoff_hz / SAMPLE_RATE * n)
    taps = (h * np.hanning(_LOW_TAPS + 2)[1:-1]).astype(np.float32)
    taps.setflags(write=False)
    return taps

_HANN = np.hanning(_N).astype(np.float32)
_HBAND = slice(300 * _N // SAMPLE_RATE, 3400 * _N // SAMPLE_RATE + 1)  # 50 Hz bins
_PEAK_BINS = 6
_RUMBLE_BINS = 4  # 0-150 Hz (50 Hz bins)
_MIN_PERIODIC = 0.75  # periodic enough to track the pitch from frame to frame
_RATIOS = np.array([1 / 3, 1 / 2, 2 / 3, 1.0, 3 / 2, 2.0, 3.0])  # octave-style pitch slips
_OCTAVES = np.array([1 / 2, 1.0, 2.0])  # a pitch, or its estimate an octave off
_ECHO_PERIODIC = 0.6  # the agent audio is periodic enough to have a pitch
_MIN_LAG, _MAX_LAG = SAMPLE_RATE // 400, SAMPLE_RATE // 50  # pitch 400..50 Hz
_TEMPLATE = SAMPLE_RATE // 100  # 10 ms
_SPAN = _TEMPLATE + _MAX_LAG  # template + longest lag: 30 ms


def _periodicity(win: np.ndarray) -> tuple[float, int]:
    """Best normalised cross-correlation of a 10 ms template with the audio one pitch lag on.

    A short template keeps gliding pitch from smearing the peak. Returns (peak, lag).
    """
    x = win[len(win) - _SPAN :]
    cross = _correlate(x[_MIN_LAG:], x[:_TEMPLATE], 0)  # np.correlate's "valid"
    c = _cumsum(x * x, dtype=np.float64)
    e0 = c[_TEMPLATE - 1]
    # the energy of the window at each lag, times the template's, + 1e3
    el = np.subtract(c[_MIN_LAG + _TEMPLATE - 1 : _MAX_LAG + _TEMPLATE], c[_MIN_LAG - 1 : _MAX_LAG])
    el *= e0
    el += 1e3
    nccf = np.divide(cross, np.sqrt(el, out=el), out=el)
    i = int(nccf.argmax())
    return float(nccf[i]), _MIN_LAG + i


def _frame_periodicity(win: np.ndarray, lag: int) -> tuple[float, float]:
    """Correlation of the whole 20 ms frame with itself `lag` +-2 samples back (`win`: the
    frame before and this one, one contiguous array).

    Returns the best value and the lag refined to a fraction of a sample (parabola).
    """
    cur = win[_N:]
    first, last = max(_MIN_LAG, lag - 2), min(_N, lag + 2)
    step = win.strides[0]  # row k: the frame `first + k` samples back (a view, then copied)
    segs = np.ndarray((last - first + 1, _N), win.dtype, win, (_N - first) * step,
                      (-step, step)).copy()
    num = segs @ cur
    den = np.sqrt(_einsum("ij,ij->i", segs, segs) * float(np.dot(cur, cur)) + 1e3)
    v = num / den
    i = int(v.argmax())
    frac = 0.0
    if 0 < i < len(v) - 1:
        curv = v[i - 1] - 2 * v[i] + v[i + 1]
        if curv < 0:
            frac = min(0.5, max(-0.5, 0.5 * (v[i - 1] - v[i + 1]) / curv))
    return float(v[i]), first + i + float(frac)  # (in float64: frac is a float32)

