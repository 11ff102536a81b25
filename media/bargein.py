"""Barge-in detection: is the caller really talking over the agent?

The voice loop hands the detector every agent frame as it is played out (the exact echo
reference) and every caller frame while agent audio is playing. Per 20 ms tick:

1. Echo canceller (`EchoCanceller`): a short frequency-domain NLMS filter, placed at the
   echo delay found by correlating the caller and reference envelopes, subtracts the
   agent's echo. It adapts only while the residual looks like echo alone, and lets its
   filter fade when cancelling keeps making frames louder (the echo path changed).
2. Echo guard: the residual must exceed the agent's recent (delayed) level times the
   measured echo leak (echo return loss plus what the canceller removes) by a margin.
3. Speech check: webrtcvad voicing on the residual, then periodicity (normalised
   cross-correlation of a 10 ms template over 50-400 Hz pitch lags) to reject noise,
   babble and clicks, and
   two marks of a steady tone (spectrum as two frames back; energy in a few bins) to
   reject tones, ringback, chimes and music, which hold still where speech moves.
4. Decision: fire once when at least `min_voiced` of the last `window` frames are voiced
   speech and steady-tone frames are few next to them (`tonal_ratio`).

Defaults were chosen on the labelled set in tests/bargein_eval.py; see benchmarks/README.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import webrtcvad

from media.frames import FRAME_SAMPLES, SAMPLE_RATE

_N = FRAME_SAMPLES  # 320 new samples per block
_DIVERGED = 2.0  # residual this much louder than the input: the filter is wrong
_DIVERGED_FRAMES = 3
_FFT = 2 * _N  # overlap-save block
_BINS = _N + 1
_FULL = 32768.0**2
_BAND = slice(300 * _FFT // SAMPLE_RATE, 3400 * _FFT // SAMPLE_RATE + 1)  # 300-3400 Hz bins
_MIN_LAG, _MAX_LAG = SAMPLE_RATE // 400, SAMPLE_RATE // 50  # pitch 400..50 Hz
_TEMPLATE = SAMPLE_RATE // 100  # 10 ms
_SPAN = _TEMPLATE + SAMPLE_RATE // 50  # template + longest lag: 30 ms
_PITCH_FFT = 512


def _db(power: float) -> float:
    return 10.0 * math.log10(power + 1e-12)


class EchoCanceller:
    """Removes the agent's echo from the caller channel, 20 ms block by block.

    The echo delay (in whole blocks, up to `tail_ms`) is tracked by the normalised
    correlation of the caller's and the reference's frame amplitudes; a frequency-domain
    NLMS filter of `active` blocks (overlap-save, gradient-constrained) sits at that delay.
    `leak_db` tracks how loud the residual is relative to the recent delayed reference
    when only echo is present; adaptation pauses when the residual is much louder than
    that (the caller is talking), so double talk does not wreck the filter.
    The state is the echo path of the line, so it lives for the whole call.
    """

    def __init__(self, tail_ms: int = 160, active: int = 3, step: float = 0.5,
                 leak_rise_db: float = 0.1, freeze_db: float = 6.0) -> None:
        self.blocks = k = max(active, int(np.ceil(tail_ms / 20)) + 1)
        self.active = active
        self.step = step
        self.leak_rise_db = leak_rise_db
        self.freeze_db = freeze_db
        self.leak_fall = 0.1
        # Reference spectra stored twice so rows [pos, pos+k) are always newest..oldest.
        self._x = np.zeros((2 * k, _BINS), np.complex128)
        self._x2 = np.zeros((2 * k, _BINS), np.float64)
        self._ref_pow = np.zeros(2 * k)  # per-block reference power, same layout
        self._pos = 0
        self._w = np.zeros((k, _BINS), np.complex128)
        self._buf = np.zeros(_FFT, np.float64)
        self._ebuf = np.zeros(_FFT, np.float64)
        self._e2 = np.zeros(_BINS, np.float64)
        self._px = np.zeros(_BINS, np.float64)
        self.px_smooth = 0.8
        self._delta = np.float64(_FFT * _N * _FULL * 10 ** (-75 / 10))
        self._reg = np.float64(4.0)
        # Running sums for the envelope correlation per block lag (forgetting ~0.7 s).
        self._forget = 0.97
        self._smr = np.zeros(k)
        self._sr = np.zeros(k)
        self._srr = np.zeros(k)
        self._sm = 0.0
        self._smm = 0.0
        self.lag = 0  # first active block
        self._turn = 0
        self._diverged = 0
        self.leak_db = 0.0  # residual relative to delayed reference, echo only
        self.ref_db = -120.0  # loudest delayed reference block in the active span, dBFS

    def _track_delay(self, m_amp: float, r_amps: np.ndarray) -> None:
        f = self._forget
        self._sm = f * self._sm + m_amp
        self._smm = f * self._smm + m_amp * m_amp
        self._smr *= f
        self._smr += m_amp * r_amps
        self._sr *= f
        self._sr += r_amps
        self._srr *= f
        self._srr += r_amps * r_amps
        n = 1.0 / (1.0 - f)
        cov = self._smr - self._sm * self._sr / n
        var = (self._smm - self._sm**2 / n) * (self._srr - self._sr**2 / n)
        corr = cov / np.sqrt(np.maximum(var, 1e-6))
        best = int(np.argmax(corr))
        self.lag = min(max(best - 1, 0), self.blocks - self.active)

    def push_reference(self, ref: np.ndarray) -> None:
        """The next 20 ms of what was played out (the echo reference timeline advances)."""
        k = self.blocks
        self._buf[:_N] = self._buf[_N:]
        self._buf[_N:] = ref
        xf = np.fft.rfft(self._buf)
        self._pos = p = (self._pos - 1) % k
        self._x[p] = self._x[p + k] = xf
        self._x2[p] = self._x2[p + k] = xf.real * xf.real + xf.imag * xf.imag
        r = self._buf[_N:]
        self._ref_pow[p] = self._ref_pow[p + k] = float(np.dot(r, r)) / _N

    def process(self, ref: np.ndarray, mic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Push one reference block, then cancel it from one caller block."""
        self.push_reference(ref)
        return self.cancel(mic)

    def cancel(self, mic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One caller block against the reference so far; returns (residual, its spectrum)."""
        k = self.blocks
        p = self._pos
        mic = mic.astype(np.float64)
        m_pow = float(np.dot(mic, mic)) / _N

        a, b = self.lag, self.lag + self.active
        xs = self._x[p + a : p + b]
        w = self._w[a:b]
        yf = (w * xs).sum(axis=0)
        e = mic - np.fft.irfft(yf, _FFT)[_N:]
        e_pow = float(np.dot(e, e)) / _N
        if e_pow > _DIVERGED * m_pow + _FULL * 1e-5:  # ... and louder than -50 dBFS
            # Cancelling keeps making the frame louder: the echo path changed (say the echo
            # went away). Pass the caller audio through untouched and let the filter fade.
            self._diverged += 1
            if self._diverged >= _DIVERGED_FRAMES:
                self._w *= 0.5
                e, e_pow = mic, m_pow
        else:
            self._diverged = 0
        self._ebuf[_N:] = e
        ef = np.fft.rfft(self._ebuf)

        e_db = _db(e_pow / _FULL)
        self.ref_db = _db(float(self._ref_pow[p + a : p + b + 1].max()) / _FULL)
        ratio = e_db - self.ref_db
        if self.ref_db > -45.0:  # the agent is clearly audible: learn the leak
            if ratio < self.leak_db:
                self.leak_db += self.leak_fall * (ratio - self.leak_db)
            else:
                self.leak_db = min(0.0, self.leak_db + self.leak_rise_db)
        # Learn (delay and filter) only while the residual looks like echo alone; before the
        # filter has converged, also whenever the caller channel is quieter than the
        # reference (bootstrap). Caller speech, coughs and noise thus leave the path alone.
        converging = self.leak_db > -15.0
        mic_db = _db(m_pow / _FULL)
        if self.ref_db > -60.0 and (ratio <= self.leak_db + self.freeze_db
                                    or (converging and mic_db <= self.ref_db - 3.0)):
            self._track_delay(np.sqrt(m_pow), np.sqrt(self._ref_pow[p : p + k]))
            e2 = ef.real * ef.real + ef.imag * ef.imag
            self._e2 = 0.6 * self._e2 + 0.4 * e2
            x2 = self._x2[p + a : p + b].sum(axis=0)
            self._px = self.px_smooth * self._px + (1 - self.px_smooth) * x2
            norm = self._px + self._reg * self._e2 + self._delta
            w += (self.step * ef / norm)[None, :] * np.conj(xs)
            # Keep each block's filter causal and N taps long; one block per frame, in turn.
            j = a + self._turn % self.active
            self._turn += 1
            t = np.fft.irfft(self._w[j], _FFT)
            t[_N:] = 0.0
            self._w[j] = np.fft.rfft(t)
        return e, ef


@dataclass
class BargeInConfig:
    """Barge-in settings. Defaults measured on tests/bargein_eval.py (benchmarks/README.md)."""

    # Chosen by the grid search of `benchmarks/bargein.py --sweep` on the dev split: this
    # point detected 48/48 speech cases with 1/131 false interrupts (p50 199 ms, p95 454 ms);
    # held out: 42/48 and 2/131. Nearby points trade one for the other: periodicity 0.75 or
    # 4 voiced frames let babble through, margin 6-9 dB lets residual echo through,
    # 0.85 or 6 voiced frames miss quiet phone voices. See benchmarks/README.md.
    vad_aggressiveness: int = 2  # 0-3 all pass speech once the guard has gated low levels
    min_level_dbfs: float = -50.0  # residual 300-3400 Hz level a caller must reach
    echo_margin_db: float = 12.0  # residual above (delayed agent level + measured leak)
    echo_tail_ms: int = 160  # longest echo delay the canceller follows
    min_periodicity: float = 0.8  # normalised cross-correlation at the pitch lag
    tonal_stationarity: float = 0.95  # spectral similarity (t vs t-2) that marks a tone
    tonal_peakiness: float = 0.98  # band energy share in the 6 strongest bins
    window: int = 8  # frames considered (160 ms)
    min_voiced: int = 5  # voiced speech frames needed in the window
    tonal_ratio: float = 2.0  # fire only if tonal frames * ratio <= voiced frames

    def __post_init__(self) -> None:
        if not 0 <= self.vad_aggressiveness <= 3:
            raise ValueError("vad_aggressiveness must be 0..3")
        if not 1 <= self.min_voiced <= self.window:
            raise ValueError("need 1 <= min_voiced <= window")
        if self.echo_tail_ms < 0:
            raise ValueError("echo_tail_ms must be >= 0")


@dataclass
class FrameFeatures:
    """What the detector saw in one caller frame (for tuning and debugging)."""

    level_dbfs: float
    guard_db: float  # residual minus expected residual echo
    voiced_vad: bool
    periodicity: float
    stationarity: float
    peakiness: float  # share of band energy in the 6 strongest bins (Hann window)
    pitch_lag: int
    voiced: bool
    tonal: bool


class BargeInDetector:
    """Decides, frame by frame, whether the caller is talking over the agent."""

    def __init__(self, config: BargeInConfig | None = None) -> None:
        self.config = config = config or BargeInConfig()
        self._vad = webrtcvad.Vad(config.vad_aggressiveness)
        self._aec = EchoCanceller(tail_ms=config.echo_tail_ms)
        self._missed = 0  # caller frames since the last agent frame
        self._prev_e = np.zeros(_N, np.float64)
        self._win = np.zeros(2 * _N, np.float64)
        self._spec_hist: list[np.ndarray | None] = [None, None]
        self._voiced = np.zeros(config.window, bool)
        self._tonal = np.zeros(config.window, bool)
        self._i = 0
        self._fired = False
        self.last: FrameFeatures | None = None

    def reset(self) -> None:
        """Forget the detection state (after an interrupt or when playout stops).

        The echo canceller keeps what it learned: the echo path belongs to the line.
        """
        self._voiced[:] = False
        self._tonal[:] = False
        self._fired = False

    def agent_frame(self, frame: np.ndarray) -> None:
        """The agent frame being played out now: the echo reference."""
        self._aec.push_reference(_check(frame))
        self._missed = 0

    def caller_frame(self, frame: np.ndarray) -> bool:
        """A caller frame heard while agent audio plays; True once when the caller barges in.

        Caller and agent frames are paired by time, not by call: agent frames advance the
        reference timeline even while caller frames are not passed in (the loop skips the
        detector while the caller is already speaking). Up to two caller frames in a row
        without an agent frame reuse the timeline (tick order or jitter); from the third on
        the agent is taken as silent and the timeline advances with silence.
        """
        frame = _check(frame)
        self._missed += 1
        if self._missed > _MAX_MISSED:
            self._aec.push_reference(_SILENCE)
        e, ef = self._aec.cancel(frame)
        feats = self._features(e, ef)
        self.last = feats
        j = self._i % self.config.window
        self._i += 1
        self._voiced[j] = feats.voiced
        self._tonal[j] = feats.tonal
        if self._fired:
            return False
        voiced = int(self._voiced.sum())
        if (voiced >= self.config.min_voiced
                and int(self._tonal.sum()) * self.config.tonal_ratio <= voiced):
            self._fired = True
            return True
        return False

    def _features(self, e: np.ndarray, ef: np.ndarray) -> FrameFeatures:
        cfg = self.config
        p = ef.real[_BAND] ** 2 + ef.imag[_BAND] ** 2
        level = _db(float(p.sum()) / (_FFT * _N) / _FULL)
        guard = level - (self._aec.ref_db + self._aec.leak_db)
        hs = np.fft.rfft(e * _HANN)[_HBAND]
        hp = hs.real * hs.real + hs.imag * hs.imag
        total = float(hp.sum()) + 1e-9
        peak = float(np.partition(hp, -_PEAK_BINS)[-_PEAK_BINS:].sum()) / total
        mag = np.sqrt(hp)
        mag /= math.sqrt(total) + 1e-9
        old = self._spec_hist[1]
        self._spec_hist = [mag, self._spec_hist[0]]
        stationarity = float(np.dot(mag, old)) if old is not None else 0.0
        self._win[:_N] = self._prev_e
        self._win[_N:] = e
        self._prev_e = e
        active = level >= cfg.min_level_dbfs and guard >= cfg.echo_margin_db
        vad = periodicity = 0.0
        lag = 0
        # webrtcvad adapts to what it hears, so it sees every frame (about 2 us).
        pcm = np.clip(e, -32768, 32767).astype(np.int16)
        vad = self._vad.is_speech(pcm.tobytes(), SAMPLE_RATE)
        if active and vad:
            periodicity, lag = _periodicity(self._win)
        tonal = bool(active and (stationarity >= cfg.tonal_stationarity
                                 or peak >= cfg.tonal_peakiness))
        voiced = bool(vad and periodicity >= cfg.min_periodicity and not tonal)
        return FrameFeatures(level, guard, bool(vad), periodicity, stationarity, peak, lag,
                             voiced, tonal)


_SILENCE = np.zeros(_N, np.int16)
_MAX_MISSED = 2
_HANN = np.hanning(_N).astype(np.float64)
_HBAND = slice(300 * _N // SAMPLE_RATE, 3400 * _N // SAMPLE_RATE + 1)  # 50 Hz bins
_PEAK_BINS = 6
_LAGS = np.arange(_MIN_LAG, _MAX_LAG + 1)


def _periodicity(win: np.ndarray) -> tuple[float, int]:
    """Best normalised cross-correlation of a 10 ms template with the audio one pitch lag on.

    A short template keeps gliding pitch from smearing the peak. Returns (peak, lag).
    """
    x = win[2 * _N - _SPAN : 2 * _N]
    t = np.fft.rfft(x[:_TEMPLATE], _PITCH_FFT)
    s = np.fft.rfft(x, _PITCH_FFT)
    cross = np.fft.irfft(np.conj(t) * s, _PITCH_FFT)[_LAGS]
    c = np.concatenate(([0.0], np.cumsum(x * x)))
    e0 = c[_TEMPLATE]
    el = c[_LAGS + _TEMPLATE] - c[_LAGS]
    nccf = cross / np.sqrt(e0 * el + 1e3)
    i = int(np.argmax(nccf))
    return float(nccf[i]), int(_LAGS[i])


def _check(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.shape != (_N,):
        raise ValueError(f"expected a frame of {_N} int16 samples, got "
                         f"{getattr(frame, 'shape', type(frame))}")
    return frame
