"""The barge-in detector: echo canceller, gate, frame features, rule (see `media.bargein`)."""

from __future__ import annotations

import math

import numpy as np
import webrtcvad

from media.bargein.canceller import _FULL, _N, _NOISE_E, EchoCanceller, _db, _sum
from media.bargein.config import BargeInConfig
from media.bargein.features import (
    _ECHO_PERIODIC,
    _HANN,
    _HBAND,
    _LOW_TAPS,
    _MIN_PERIODIC,
    _PEAK_BINS,
    _RUMBLE_BINS,
    FrameFeatures,
    _frame_periodicity,
    _lowpass,
    _periodicity,
)
from media.bargein.rule import GATED, DecisionRule
from media.frames import SAMPLE_RATE
from media.numpy_c import clip as _clip
from media.numpy_c import correlate as _correlate


class BargeInDetector:
    """Decides, frame by frame, whether the caller is talking over the agent."""

    def __init__(self, config: BargeInConfig | None = None) -> None:
        self.config = config = config or BargeInConfig()
        self._vad = webrtcvad.Vad(config.vad_aggressiveness)
        self._aec = EchoCanceller(config.canceller, max_delay_ms=config.echo_tail_ms,
                                  explained_ratio=config.echo_explained)
        self._rule = DecisionRule(config)
        self._prev_e = np.zeros(_N, np.float32)
        self._tail = np.zeros(_LOW_TAPS - 1, np.float32)  # end of the frame before _prev_e
        self._lowpass = _lowpass(config.low_cutoff_hz)
        self._lowpass_rev = self._lowpass[::-1]  # np.convolve(x, h) = correlate(x, h[::-1])
        self._levels = [-70.0] * max(1, config.floor_ms // 20)  # a list: min() is cheaper
        self._li = 0
        self._prev_mag: np.ndarray | None = None  # spectrum of the last frame if active
        self.last: FrameFeatures | None = None  # features of the last caller frame
        self.last_kind = GATED

    @property
    def echo_canceller(self) -> EchoCanceller:
        return self._aec

    def reset(self) -> None:
        """Forget the detection state (after an interrupt or when playout stops).

        The echo canceller and the residual level history stay: they belong to the line.
        """
        self._rule.reset()

    def agent_frame(self, frame: np.ndarray, t: float) -> None:
        """The agent frame the far end plays from time `t` (seconds, on its frame grid):
        the echo reference."""
        self._aec.write_reference(_check(frame), round(t * SAMPLE_RATE))

    def caller_frame(self, frame: np.ndarray, t: float) -> bool:
        """A caller frame heard while agent audio plays, ending at time `t` on the far
        end's frame grid (`media.far_end_clock`); True once when the caller barges in.

        Caller and agent frames are paired by these times, not by the order they come in,
        so network jitter, frames arriving in bursts and a late ticker leave the echo's
        delay unchanged. Where no agent frame was played the reference is silence.
        """
        frame = _check(frame)
        e = self._aec.cancel(frame, round(t * SAMPLE_RATE), explain=not self._rule.fired)
        self.last = feats = self._features(e)
        self.last_kind, hit = self._rule.push(feats)
        return hit

    @property
    def eager(self) -> bool:
        """The last caller frame calls for an eager pause: a loud, voice-like sound that has
        not fired the detector (yet). A pause may come this early; an interruption must wait
        for its confirmation (`gateway.barge_in`)."""
        return self._rule.eager

    def _features(self, e: np.ndarray) -> FrameFeatures:
        cfg = self.config
        e_e = float(np.dot(e, e))
        level = _db(e_e / (_N * _FULL))
        guard = _db(e_e) - _db(self._aec.expected_echo() + _NOISE_E)
        rise = level - min(self._levels)
        self._levels[self._li] = max(level, -70.0)
        self._li = (self._li + 1) % len(self._levels)
        prev_e, tail = self._prev_e, self._tail
        self._prev_e = e
        self._tail = prev_e[-len(tail):]
        if level < cfg.min_level_dbfs or guard < cfg.echo_margin_db:
            self._prev_mag = None
            return FrameFeatures(level, guard, rise, False)
        # Spectrum (Hann, 50 Hz bins, 300-3400 Hz): marks of a tone.
        hs = np.fft.rfft(e * _HANN)
        hfull = hs.real * hs.real + hs.imag * hs.imag
        rumble = float(_sum(hfull[:_RUMBLE_BINS])) / (float(_sum(hfull)) + 1e-9)
        hp = hfull[_HBAND]
        total = float(_sum(hp)) + 1e-9
        top = hp.copy()
        top.partition(-_PEAK_BINS)
        peak = float(_sum(top[-_PEAK_BINS:])) / total
        mag = np.sqrt(hp) / math.sqrt(total)
        stat = float(np.dot(mag, self._prev_mag)) if self._prev_mag is not None else 0.0
        self._prev_mag = mag
        pcm = _clip(e, -32768, 32767).astype(np.int16)
        vad = self._vad.is_speech(pcm.tobytes(), SAMPLE_RATE)
        per = n20 = lag = lper = ln20 = llag = echo_lag = 0.0
        if vad or not cfg.require_vad:
            win = np.concatenate((prev_e, e))
            per, ilag = _periodicity(win)
            n20, lag = _frame_periodicity(win, ilag)
            if cfg.low_path:
                low = _correlate(np.concatenate((tail, win)), self._lowpass_rev, 0)
                lper, ilag = _periodicity(low)
                ln20, llag = _frame_periodicity(low, ilag)
            if max(per, lper) >= _MIN_PERIODIC:  # may be voiced: is it at the echo's pitch?
                ref = self._aec.aligned_reference(2 * _N)
                if ref is not None:
                    eper, elag = _periodicity(ref)
                    echo_lag = float(elag) if eper >= _ECHO_PERIODIC else 0.0
        aec = self._aec
        share = aec.explained_share if aec.tested else -1.0
        return FrameFeatures(level, guard, rise, True, bool(vad), per, n20, lag, peak, stat,
                             lper, ln20, llag, echo_lag, rumble, share)



def _check(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.shape != (_N,):
        raise ValueError(f"expected a frame of {_N} int16 samples, got "
                         f"{getattr(frame, 'shape', type(frame))}")
    return frame
