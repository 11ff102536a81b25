"""The echo canceller of the barge-in detector: the agent's audio (the exact reference) taken
out of the caller channel, 20 ms frame by frame (see `media.bargein`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.numpy_c import correlate as _correlate
from media.numpy_c import einsum as _einsum

_max = np.maximum.reduce
_sum = np.add.reduce
_cumsum = np.add.accumulate  # np.cumsum without its wrapper
_NO_TAPS = np.zeros(0, np.float32)

_N = FRAME_SAMPLES  # 320 samples per frame
_FULL = 32768.0**2
_NOISE_E = _N * _FULL * 1e-7  # -70 dBFS frame energy: below anything that matters


def _db(power: float) -> float:
    return 10.0 * math.log10(power + 1e-12)


@dataclass(frozen=True)
class CancellerConfig:
    """The echo canceller's hand-set constants (defaults: set by hand on the dev flows of
    tests/kit/bargein_eval.py and tests/kit/bargein_call_flows.py), for a sweep to tune."""

    max_delay_ms: int = 200  # longest echo delay searched (at most `MAX_ECHO_MS`)
    taps: int = 128  # echo path filter length
    pre: int = 32  # taps kept before the strongest echo (band-limited paths ring)
    explained_ratio: float = 0.55  # share of a residual the reference explains: echo
    seed_fit: float = 0.7  # the share explained (two frames in a row) that seeds or drops a filter
    fit_taps: int = 24  # the short filter fitted around the best-matching lag ...
    fit_pre: int = 8  # ... and its taps before that lag
    converged: int = 20  # filter updates before the echo estimate is trusted
    seed_keep: int = 12  # Welch updates before its estimate replaces a seeded filter
    shift_frames: int = 3  # frames in a row that match the echo a frame off: the echo moved
    nudge: int = 24  # samples (1.5 ms) a stale filter may be moved by at once
    lag_agree: int = 24  # fits outside the filter agree on a lag this close: a moved path
    stale_left: float = 0.1  # a sure-echo frame the filter leaves more of (10 dB): correct it
    max_echo_gain_db: float = 3.0  # sure echo is no louder than its reference by more than this
    no_echo_db: float = -60.0  # the echo estimate of a line with no evidence of echo
    audible_dbfs: float = -45.0  # a reference frame over this: echo would show
    suspect_dbfs: float = -52.0  # a residual over this may be the caller: test it ...
    suspect_margin: float = 3.0  # ... if it is this much (5 dB) over the expected echo as well

    def __post_init__(self) -> None:
        if not 0 <= self.max_delay_ms <= MAX_ECHO_MS:
            raise ValueError(f"max_delay_ms must be within 0..{MAX_ECHO_MS}")
        if not 0 <= self.pre < self.taps <= _WELCH:
            raise ValueError(f"need 0 <= pre < taps <= {_WELCH}")
        if not 0 <= self.fit_pre < self.fit_taps:
            raise ValueError("need 0 <= fit_pre < fit_taps")
        if self.nudge < 0 or self.shift_frames < 1:
            raise ValueError("need nudge >= 0 and shift_frames >= 1")


class EchoCanceller:
    """Removes the agent's echo from the caller channel, 20 ms frame by frame.

    `write_reference` puts played agent audio on a timeline by sample time; `cancel` takes
    a caller frame with the time it was heard and returns the residual. The echo delay (up
    to `max_delay_ms`) comes from an accumulated GCC (300-3400 Hz, partly whitened) between
    the caller and the reference; the echo path after that delay is a `taps`-long filter
    estimated from Welch-averaged cross-spectra, learned only on frames whose residual
    looks like echo alone. `leak_db` tracks the residual relative to the aligned agent
    level on those frames. The state is the echo path of the line: keep it for the call.
    Settings: `config`, with `changes` to its fields (`EchoCanceller(max_delay_ms=120)`).
    """

    def __init__(self, config: CancellerConfig | None = None, **changes: Any) -> None:
        self.config = cfg = replace(config or CancellerConfig(), **changes)
        self.explained_ratio = cfg.explained_ratio
        self.taps = cfg.taps
        self.pre = cfg.pre
        self._max_lag = max(1, (cfg.max_delay_ms + 5) * SAMPLE_RATE // 1000)
        # the delay search's span of reference: 256 ms up to 208 ms of echo (the default
        # 200 ms), longer for a longer `max_delay_ms` (a SIP line: both jitter buffers)
        self._gcc = gcc = _gcc_size(self._max_lag + _GCC_MIC)
        self._window = gcc + _N  # reference samples a caller frame is cancelled against
        self._band = _band(gcc)
        self._audible_e = _N * _FULL * 10 ** (cfg.audible_dbfs / 10)
        self._suspect_e = _N * _FULL * 10 ** (cfg.suspect_dbfs / 10)
        # The agent's audio by sample time (mod _RING), stored twice over so that any
        # window is one slice; written (or filled with silence) up to `_written`.
        self._line = np.zeros(2 * _RING, np.float32)
        self._written: int | None = None
        self._ref = self._line[: self._window]  # the window of the last cancel(), newest last
        self._mic = np.zeros(_GCC_MIC, np.float32)
        self._res = np.zeros(_GCC_MIC, np.float32)  # the residual, as _mic
        self._npair = np.zeros((2, gcc), np.float32)
        self._nspec = np.zeros((2, gcc // 2 + 1), np.complex64)  # its spectra
        self._ncorr = np.zeros(gcc, np.float32)
        self._cs = np.zeros(gcc + 1)
        self.explained = False  # the last frame's residual correlates with the reference
        self._explained_before = False  # ... and the frame before it
        self._explained_run = 0  # tested frames in a row that were explained
        self._suspect = False  # the last residual was over the expected echo (not learned)
        self.explained_share = 0.0  # ... the share of it explained (0: not tested)
        self.tested = False  # ... and whether it was tested
        self._gacc = np.zeros(gcc)
        self._gpair = np.zeros((2, gcc), np.float32)
        self._gspec = np.zeros((2, gcc // 2 + 1), np.complex64)
        self._gcorr = np.zeros(gcc, np.float32)
        # float64: pocketfft is faster on it than on float32 (the samples convert exactly)
        self._wpair = np.zeros((2, _WELCH))
        self._wspec = np.zeros((2, _WELCH // 2 + 1), np.complex128)
        self._wpow = np.zeros((2, _WELCH // 2 + 1))
        self._gcc_n = 0
        self._sxm = np.zeros(_WELCH // 2 + 1, np.complex128)
        self._sxx = np.zeros(_WELCH // 2 + 1)
        self._welch_n = 0
        self._frame = 0
        self.h: np.ndarray | None = None  # filter taps for lags start .. start+taps-1
        self._h_rev = _NO_TAPS  # h reversed (a view), for the correlation that applies it
        self._seeded = False  # h is a least-squares fit of one explained residual
        self._fit: tuple[int, int, np.ndarray] = (0, 0, np.zeros(0))
        self._last_fit_lag: int | None = None  # centre lag of the last tested frame's fit
        self.start = 0
        self.delay: int | None = None  # echo delay in samples, once locked
        self.leak_db = 0.0  # residual echo relative to the aligned reference, echo only
        self.ref_energy = 0.0  # energy of the aligned reference frame (last cancel)
        self._expected = 0.0
        # before convergence: echo vs the loudest reference frame, learned only from frames
        # the reference explains (no echo until there is evidence of it)
        self.raw_leak_db = cfg.no_echo_db
        self._shifted = 0  # the last caller frame matched the echo a frame off (+-_N)
        self._shift_run = 0  # caller frames in a row that did, the same way

    def write_reference(self, ref: np.ndarray, start: int) -> None:
        """Agent audio played from sample time `start` (any order; late frames patch the
        timeline, gaps are silence)."""
        end = start + len(ref)
        if self._written is None:
            self._written = start
        if end <= self._written - _RING:
            return  # older than anything a caller frame can still be paired with
        if start > self._written:
            self._silence_until(start)
        self._put(start, ref)
        if end > self._written:
            self._written = end

    def _silence_until(self, t: int) -> None:
        if self._written is None:
            self._written = t
        gap = t - self._written
        if gap >= _RING:
            self._line[:] = 0.0
        elif gap > 0:
            self._put(self._written, _ZEROS[:gap])
        self._written = max(self._written, t)

    def _put(self, start: int, data: np.ndarray) -> None:
        i, n = start % _RING, len(data)
        line = self._line
        if i + n <= _RING:  # (almost always: a frame does not straddle the ring's end)
            line[i : i + n] = line[_RING + i : _RING + i + n] = data
            return
        first = _RING - i
        line[i:_RING] = line[_RING + i :] = data[:first]
        line[: n - first] = line[_RING : _RING + n - first] = data[first:]

    def expected_echo(self) -> float:
        """Energy the residual echo of the last cancelled frame should have."""
        return self._expected

    def aligned_reference(self, n: int) -> np.ndarray | None:
        """The `n` reference samples whose echo ends with the last caller frame (None until
        the delay is known)."""
        if self.delay is None:
            return None
        end = len(self._ref) - self.delay
        return self._ref[end - n : end]

    def cancel(self, mic: np.ndarray, end: int, explain: bool = True) -> np.ndarray:
        """One caller frame whose last sample was heard at sample time `end`, against the
        agent audio played before then; returns the residual (float32). `explain`: test
        whether the reference explains a residual that would pass the gate (off once the
        detector has decided, until its reset: the test is the costly part)."""
        cfg = self.config
        if self._written is None or end > self._written:
            self._silence_until(end)
        i = (end - self._window) % _RING
        self._ref = self._line[i : i + self._window]
        m = mic.astype(np.float32)
        mb = self._mic
        mb[:-_N] = mb[_N:]
        mb[-_N:] = m
        self._frame += 1
        m_e = float(np.dot(m, m))
        e, e_e = m, m_e
        self._shifted = 0
        if self.h is not None and m_e > 0.0:  # digital silence has no echo to cancel
            end = len(self._ref) - self.start
            res, r_e = self._residual(m, end)
            if r_e > 0.1 * m_e and r_e > _N * _FULL * 1e-5:  # would reach the gate's level
                # The echo may have moved by a frame: where a talkspurt starts on the far
                # end's grid is a guess near the grid's edge. Try the echo a frame later,
                # then a frame earlier.
                for shift in (_N, -_N):
                    if end - shift - _N - self.taps + 1 >= 0 and end - shift <= len(self._ref):
                        res2, r2_e = self._residual(m, end - shift)
                        if r2_e < 0.5 * r_e:
                            res, r_e, self._shifted = res2, r2_e, shift
                            break
            if r_e < m_e:  # else the echo path changed under the filter: pass the mic on
                e, e_e = res, r_e
            # a move is taken only from frames the other pairing cancels well (10 dB):
            # with the caller talking, one may just happen to leave less behind
            moved = self._shifted and r_e < 0.1 * m_e
            self._shift_run = self._shift_run + 1 if moved else 0
            if self._shift_run >= cfg.shift_frames:  # it did move: move the echo path along
                self._echo_moved(self._shifted)
                self._shift_run = 0
        rb = self._res
        rb[:-_N] = rb[_N:]
        rb[-_N:] = e
        r = self._ref
        if self.delay is None:
            self.ref_energy = 0.0
        else:  # the aligned frame and a quarter frame either side
            q = _N // 4
            seg = r[len(r) - _N - self.delay - q : len(r) - self.delay + min(q, self.delay)]
            self.ref_energy = float(np.dot(seg, seg)) * _N / len(seg)
        if self._untrusted():
            # No filter to trust yet: expect the loudest reference frame of the span times
            # the echo ratio learned from explained frames (none: -60 dB, no echo).
            frames = r[len(r) - _N * (self._max_lag // _N + 1) :].reshape(-1, _N)
            loudest = float(_max(_einsum("ij,ij->i", frames, frames)))
            self._expected = 10.0 ** (self.raw_leak_db / 10.0) * loudest
        else:
            loudest = self.ref_energy
            self._expected = 10.0 ** (self.leak_db / 10.0) * self.ref_energy
        # A residual that would pass the gate is tested against the reference: if the
        # agent's audio explains it (a short filter at the best-matching lag reproduces
        # most of it), it is echo the estimate missed (a line not learned yet, a path that
        # moved), not the caller. Only such frames teach the estimate that there is echo:
        # the caller's own voice, which the reference does not explain, never does (it may
        # by chance: about 1 frame in 25 of the dev flows' caller frames is taken as echo).
        self._explained_before = self.explained
        self.explained = False
        self.explained_share = 0.0
        self.tested = False  # the reference was tested against this residual
        self._suspect = (e_e > self._suspect_e and loudest > self._audible_e
                         and e_e > cfg.suspect_margin * self._expected)
        if explain and self._suspect:
            self.tested = True
            self.explained_share = self._explained_share()
            agrees = self._fit_agrees()
            self.explained = (agrees and self.explained_share >= self.explained_ratio
                              and self._echo_not_louder(e_e))
            self._explained_run = self._explained_run + 1 if self.explained else 0
        # Sure echo: explained two frames in a row, the second far better than the caller's
        # voice ever is by chance. Only it seeds or drops a filter and raises the estimate
        # (one seeded on the caller would teach the estimate that the caller is echo).
        sure = (self.explained and self._explained_before
                and self.explained_share >= cfg.seed_fit)
        if sure:
            if self.h is None:
                self._seed(m_e)
            elif self._explained_run >= 3 and not self._covers(self._fit_lag()):
                # the echo comes from lags the filter does not cover: the path moved.
                # Start over (conservative until explained frames seed a new filter).
                self._relock(None)
                self._gacc[:] = 0.0
                self._gcc_n = 0
                self.raw_leak_db = max(self.raw_leak_db, self.leak_db + 6.0)
            elif e_e > cfg.stale_left * m_e:
                # the filter covers the echo's lags but leaves most of it: the path shifted
                # a little (a far end that plays from arrival when its queue runs dry moves
                # the echo by the lateness, a fraction of a frame): move the filter by the
                # shift that cancels the last 40 ms best, or else correct it by the fit
                moved = self._nudge()
                if moved:
                    self._echo_moved(moved)
                else:
                    self._correct()
        if loudest > self._audible_e and (
                self._untrusted()):
            ratio = max(_db(e_e / loudest), cfg.no_echo_db)
            if sure:
                self.raw_leak_db += 0.5 * (ratio - self.raw_leak_db)
            elif ratio < self.raw_leak_db:
                self.raw_leak_db += 0.02 * (ratio - self.raw_leak_db)
            self._expected = 10.0 ** (self.raw_leak_db / 10.0) * loudest
        if self.explained:
            self._expected = max(self._expected, e_e)
        self._learn(m_e, e_e)
        return e

    def _explained_share(self) -> float:
        """How much of the newest residual the reference explains (0..1): the share of its
        last 40 ms that a 24-tap filter around the best-matching echo lag reproduces from
        the reference (least squares). On the dev flows the caller's voice scores 0.15
        median and 0.47 at the 95th percentile, echo through dispersive paths 0.98 median
        and 0.58 at the 5th: a lag-by-lag correlation alone separated them worse (echo
        through a spread-out path correlates weakly at any one lag)."""
        pair, G = self._npair, self._gcc
        pair[0] = self._ref[-G:]
        pair[1, -_NCC:] = res = self._res[-_NCC:]
        x, y = _rfft(pair, self._nspec)
        np.conjugate(y, out=y)
        g = _irfft(np.multiply(x, y, out=x), self._ncorr)
        lags = self._max_lag
        c = np.empty(lags + 1)
        c[0] = g[0]
        c[1:] = g[G - 1 : G - lags - 1 : -1]  # c[k]: reference k samples earlier
        cs = self._cs
        _cumsum(np.square(pair[0], dtype=np.float64), out=cs[1:])
        # energy of the reference window at lag k: cs[G - k] - cs[G - NCC - k]
        e = np.subtract(cs[G - lags : G + 1], cs[G - _NCC - lags : G - _NCC + 1])
        # (a window of near silence must not divide the FFT's rounding noise by nothing)
        e += 1e-3 * float(_max(e)) + 1.0
        best = int(np.divide(c, np.sqrt(e[::-1], out=e[::-1]), out=c).argmax())
        fit_taps, fit_pre = self.config.fit_taps, self.config.fit_pre
        lo, hi = max(0, best - fit_pre), min(lags, best + fit_taps - fit_pre)
        seg = pair[0, G - _NCC - hi : G - lo].astype(np.float64)
        w = _rows(seg, hi - lo + 1, _NCC).copy()  # a row per lag
        b = res.astype(np.float64)
        ata = w @ w.T
        atb = w @ b
        ata.flat[:: len(ata) + 1] += 1e-6 * float(np.trace(ata)) / len(ata) + 1.0
        h = _solve(ata, atb)
        self._fit = (lo, hi, h)
        return float(np.dot(h, atb)) / (float(np.dot(b, b)) + 1e-9)

    def _fit_agrees(self) -> bool:
        """The fit's lag is one the echo may come from: within the trusted filter's span,
        or (a path that moved) within `lag_agree` of the last tested frame's fit. A caller
        whose voice a fit happens to match (the agent's own voice, say) is matched at lags
        that wander from frame to frame; taken for echo, they would move the path away."""
        lag, last = self._fit_lag(), self._last_fit_lag
        self._last_fit_lag = lag
        if self._untrusted() or self._covers(lag):
            return True
        return last is not None and abs(lag - last) <= self.config.lag_agree

    def _untrusted(self) -> bool:
        """No echo filter to trust yet: no delay, or a filter neither seeded nor converged."""
        return self.delay is None or (self._welch_n < self.config.converged
                                      and not self._seeded)

    def _fit_lag(self) -> int:
        """The centre lag of the last fit (`_explained_share`)."""
        lo, hi, _ = self._fit
        return (lo + hi) // 2

    def _covers(self, lag: int) -> bool:
        """The echo filter's taps span `lag`."""
        return self.start <= lag < self.start + self.taps

    def echo_end(self) -> int | None:
        """The lag (samples) of the learned echo path's last tap; None when none is learned."""
        return None if self.h is None else self.start + self.taps

    def _echo_not_louder(self, e_e: float) -> bool:
        """The share of the residual the fit explains is no louder than the reference it
        came from, plus `max_echo_gain_db`: a line's echo is a loss (G.168 asks hybrids
        for 6 dB at least), so a loud caller whose voice a fit happens to match (same
        voice, same pitch) does not pass for echo."""
        lag = self._fit_lag()
        r = self._ref
        seg = r[len(r) - _N - lag : len(r) - lag]
        gain = 10 ** (self.config.max_echo_gain_db / 10)
        return self.explained_share * e_e <= gain * float(np.dot(seg, seg))

    def _seed(self, m_e: float) -> None:
        """No echo path yet, and the reference explains this residual (the raw caller
        channel): take the fitted short filter as the echo path at once. The Welch
        estimate takes over once it has averaged `seed_keep` updates."""
        lo, hi, h = self._fit
        taps = np.zeros(self.taps, np.float32)
        n = min(hi - lo + 1, self.taps)
        taps[:n] = h[::-1][:n]  # h[j] is the lag hi - j; taps[k] the lag lo + k
        self.h, self._h_rev = taps, taps[::-1]
        self.start = lo
        self.delay = lo + int(np.argmax(np.abs(taps)))
        self._seeded = True
        # Until it has shown what it removes, expect the echo 6 dB under the raw echo of
        # this frame (its level against the reference frame it came from): the filter was
        # fitted on 40 ms and removes 10-20 dB of the frames after it.
        r = self._ref
        seg = r[len(r) - _N - self.delay : len(r) - self.delay]
        erl = _db(m_e / (float(np.dot(seg, seg)) + 1e-9))
        self.leak_db = min(erl, 0.0) - 6.0
        self._welch_n = 0
        self._sxm[:] = 0.0
        self._sxx[:] = 0.0

    def _nudge(self) -> int:
        """The shift (samples, within +-`nudge`) of the filter's echo estimate that leaves
        the least of the last 40 ms of the caller channel, if it leaves a quarter (6 dB)
        of what the unshifted filter leaves or less; else 0."""
        ref, k = self._ref, self.config.nudge
        end = len(ref) - self.start
        lo, hi = end - _NCC - self.taps + 1 - k, end + k
        if lo < 0 or hi > len(ref):
            return 0
        est = _correlate(ref[lo:hi], self._h_rev, 0)  # est[j]: at reference sample lo+taps-1+j
        rows = _rows(est, 2 * k + 1, _NCC)
        # row r: the window had the echo come k - r samples later than the filter says
        err = np.sum(np.square(self._mic[-_NCC:][None, :] - rows), axis=1)
        best = int(np.argmin(err))
        if err[best] > 0.25 * err[k]:  # (row k: unshifted)
            return 0
        return k - best

    def _correct(self) -> None:
        """Add the fitted short filter (what the current one left of the echo) to the
        filter, and restart the Welch estimate from here: its average spans the old
        alignment."""
        assert self.h is not None
        lo, hi, h = self._fit
        taps = self.h.copy()
        k = np.arange(lo, hi + 1) - self.start
        ok = (k >= 0) & (k < self.taps)
        taps[k[ok]] += h[::-1][ok].astype(np.float32)  # h[j] is the lag hi - j
        self.h, self._h_rev = taps, taps[::-1]
        self._seeded = True
        self._welch_n = 0
        self._sxm[:] = 0.0
        self._sxx[:] = 0.0

    def _echo_moved(self, moved: int) -> None:
        """The echo now comes `moved` samples later in our timeline (earlier if negative),
        the same path a frame off: move the learned path and the delay search's evidence
        with it instead of learning them anew."""
        assert self.delay is not None
        delay, start = self.delay + moved, self.start + moved
        if not 0 <= delay < self._max_lag or start < 0:
            self._relock(None)
            return
        self.delay, self.start = delay, start
        g = np.roll(self._gacc, moved)
        if moved > 0:
            g[:moved] = 0.0
        else:
            g[moved:] = 0.0
        self._gacc = g

    def _relock(self, delay: int | None) -> None:
        """Drop the learned echo path; learn it again at `delay` (or search anew)."""
        self.delay = delay
        self.start = 0 if delay is None else max(0, delay - self.pre)
        self.h, self._h_rev, self._welch_n = None, _NO_TAPS, 0
        self._seeded = False
        self._sxm[:] = 0.0
        self._sxx[:] = 0.0

    def _residual(self, m: np.ndarray, end: int) -> tuple[np.ndarray, float]:
        # np.convolve(ref, h, "valid") is this correlation with the reversed taps (real
        # arrays, the longer first)
        res = _correlate(self._ref[end - _N - self.taps + 1 : end], self._h_rev, 0)
        np.subtract(m, res, out=res)
        return res, float(np.dot(res, res))

    def _learn(self, m_e: float, e_e: float) -> None:
        if self._shifted:
            return  # this frame was paired late: the buffers are not aligned for learning
        ref_e = self.ref_energy if self.delay is not None else self._expected
        if ref_e < _N * _FULL * 1e-6:  # the agent is quiet here (-60 dBFS): nothing to learn
            return
        if self.delay is not None:
            r_db = _db(e_e / ref_e)
            if not self.explained and (self._suspect or r_db > self.leak_db + 10.0):
                return  # the caller (or a noise) is louder than echo: double talk
            if ref_e > self._audible_e:
                # (fast only on sure echo: a caller's voice the fit happens to explain
                # half of, a few frames in a row, must not teach the line 15 dB of echo)
                fast = self.explained and self.explained_share >= self.config.seed_fit
                self.leak_db += (0.3 if fast else 0.05) * (r_db - self.leak_db)
        f = self._frame
        # Learn fast while locking on, then only often enough to follow a slow drift.
        if m_e > _N * _FULL * 1e-5 and f % (2 if self.delay is None else 3 if self._gcc_n < 25 else 100) == 0:
            self._update_delay()
        if self.delay is not None and f % (1 if self._welch_n < 20 else 5 if self._welch_n < 250 else 10) == 0:
            self._update_filter()

    def _update_delay(self) -> None:
        pair = self._gpair  # reference and caller, transformed in one call
        pair[0] = self._ref[-self._gcc :]
        pair[1, -_GCC_MIC:] = self._mic  # aligned with the newest reference samples
        x, mic = _rfft(pair, self._gspec)
        c = np.multiply(mic, np.conjugate(x, out=x), out=mic)
        # partly whitened in the band, nothing outside it
        band = c[self._band]
        w = np.abs(band)
        w += 1e-3
        w **= 0.8
        band *= np.divide(1.0, w, dtype=np.float64)
        c[: self._band.start] = 0.0
        c[self._band.stop :] = 0.0
        self._gacc *= 0.95
        self._gacc += _irfft(c, self._gcorr)  # index = echo lag in samples
        self._gcc_n += 1
        if self._gcc_n < 5:
            return
        g = self._gacc[: self._max_lag]
        d = int(g.argmax())
        if g[d] < 6.0 * math.sqrt(float(_sum(np.square(g))) / len(g)):
            return  # no clear echo peak (yet)
        if self.delay is None:
            self.delay = d
            self.start = max(0, d - self.pre)
            self.leak_db = max(self.raw_leak_db, -30.0)  # no filter yet: the path's own loss
        elif (not self.start <= d < self.start + self.taps - self.pre
              and g[d] > 1.5 * self._gacc[self.delay]):
            # another echo path: learn it afresh (moving the old filter there was tried:
            # two echo cases of the fresh draws then interrupted the agent)
            self._relock(d)

    def _update_filter(self) -> None:
        end = len(self._ref) - self.start
        pair = self._wpair  # reference and caller, transformed in one call
        pair[0] = self._ref[end - _WELCH : end]
        pair[1] = self._mic[-_WELCH:]
        pair *= _WELCH_WIN
        x, m = _rfft(pair, self._wspec)
        xx, yy = self._wpow
        np.square(x.real, out=xx)
        xx += np.square(x.imag, out=yy)
        self._sxx *= 0.97
        self._sxx += xx
        self._sxm *= 0.97
        self._sxm += np.multiply(np.conjugate(x, out=x), m, out=m)
        self._welch_n += 1
        if self._welch_n % (2 if self._welch_n < 40 else 4) == 0 and (
                not self._seeded or self._welch_n >= self.config.seed_keep):
            den = self._sxx + 1e-6 * float(_max(self._sxx))
            den += 1e-3
            hf = np.divide(self._sxm, den, out=self._wspec[0])
            self.h = _irfft(hf, self._wpair[0])[: self.taps].astype(np.float32)
            self._h_rev = self.h[::-1]


_GCC = 4096  # delay search: at least 256 ms of reference (echo lags up to 208 ms) ...
_RING = 16384  # the reference timeline kept: about 1 s (late caller frames still pair)
_ZEROS = np.zeros(_RING, np.float32)
_GCC_MIC = 768  # ... against the newest 48 ms of caller audio
MAX_ECHO_MS = 500  # the longest `max_delay_ms`: its search's window still fits the ring


def _gcc_size(n: int) -> int:
    """The delay search's length for `n` samples: `_GCC` (256 ms), or else the smallest
    even length of factors 2, 3 and 5 only (fast FFTs) that holds them."""
    if n <= _GCC:
        return _GCC
    while True:
        m = n // 2
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1 and n % 2 == 0:
            return n
        n += 1


def _band(gcc: int) -> slice:
    """The bins of 300-3400 Hz in a `gcc`-point spectrum."""
    return slice(math.ceil(300 * gcc / SAMPLE_RATE), 3400 * gcc // SAMPLE_RATE + 1)


_WELCH = 512
_NCC = 640  # residual samples (40 ms) tested against the reference
_WELCH_WIN = np.hanning(_WELCH)


def _rows(a: np.ndarray, n: int, width: int) -> np.ndarray:
    """`n` overlapping rows of `width` samples of `a`, each one sample on (a view; as
    `sliding_window_view` without its checks, which cost 30 us here)."""
    step = a.strides[0]
    return np.ndarray((n, width), a.dtype, a, 0, (step, step))


try:  # numpy's C functions without their Python wrappers (a few us a call here)
    from numpy.fft._pocketfft_umath import irfft as _pf_irfft
    from numpy.fft._pocketfft_umath import rfft_n_even as _pf_rfft
    from numpy.linalg._umath_linalg import solve1 as _solve1

    _AXES = [(-1,), (), (-1,)]

    def _rfft(a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`np.fft.rfft` of the rows of `a` (even length) into `out`."""
        return _pf_rfft(a, 1, axes=_AXES, out=out)

    def _irfft(a: np.ndarray, out: np.ndarray) -> np.ndarray:
        """`np.fft.irfft(a, len(out))` into `out` (the same precision as `a`)."""
        # (the scale in the output's precision, as numpy passes it: else another loop runs)
        return _pf_irfft(a, out.dtype.type(1.0 / out.shape[-1]), axes=_AXES, out=out)

    def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """`np.linalg.solve` of a regular float64 system."""
        return _solve1(a, b, signature="dd->d")
except ImportError:  # numpy < 2
    def _rfft(a: np.ndarray, out: np.ndarray) -> np.ndarray:
        out[...] = np.fft.rfft(a)
        return out

    def _irfft(a: np.ndarray, out: np.ndarray) -> np.ndarray:
        out[...] = np.fft.irfft(a, out.shape[-1])
        return out

    _solve = np.linalg.solve

