"""Barge-in detection: is the caller really talking over the agent?

The voice loop hands the detector every agent frame as it is played out (the exact echo
reference) and every caller frame while agent audio is playing, each with its time on the
far end's 20 ms frame grid (`media.far_end_clock`), which pairs them however the network
delivers them. Per 20 ms tick:

1. Echo canceller (`EchoCanceller`): a line starts as a line without echo, so a caller
   who talks in the first 100 ms of the agent's first reply is heard as fast as one a
   minute in. A residual that would pass the gate is tested against the reference (a
   24-tap least-squares fit around the best-matching lag, up to 208 ms back): when the
   agent's audio explains most of it, it is echo, gated, and only such frames teach the
   estimate that there is echo; two in a row seed the filter with that fit at once. The
   caller's voice, which the reference does not explain, never raises the estimate (an
   estimate that learned from the residual's level learned the caller as echo, and the
   first reply's barge-ins took 0.6-1.8 s). The delay search (band-limited, phase-
   weighted cross-correlation, 4096-point FFTs, every frame until it locks) and a
   128-tap filter from averaged cross-spectra (Welch, 512-point) take over; three
   explained residuals in a row from lags the filter does not cover mean the path moved:
   the filter is dropped and seeded anew. About 20-30 dB of echo is removed.
2. Gate (every frame, a few microseconds): the residual must be louder than
   `min_level_dbfs` and than the expected leftover echo (delayed agent level times the
   measured leak) by `echo_margin_db`. Most frames stop here.
3. Frame class, only for frames past the gate: *voiced* (webrtcvad, pitch periodicity of
   a 10 ms template and of the whole frame, at least `min_rise_db` above the quietest
   recent residual, which keeps babble and steady noise out), *tonal* (energy in a few
   bins, a spectrum that holds still over three frames, or a pitch held exactly from
   the frame before: tones, ringback, chimes, music), or *other* (noise, consonants).
   A would-be voiced frame within `echo_voice_tol` of the pitch of the agent audio whose
   echo arrives with it, and less than `echo_voice_guard_db` over the expected echo, is
   *other*: leftover echo (fresh draws: echo just after a phone click, 6-7 dB over).
4. Low band (only for frames webrtcvad calls speech): the same pitch measures on the
   residual low-passed to `low_cutoff_hz` (a 65-tap FIR over the 40 ms window), where
   quiet and phone-band voices measure more periodic than across the whole band. They
   give a second frame kind, classified like the first with its own thresholds.
5. Decision: fire once when `min_voiced` of the last `window` frames are voiced, at most
   `max_other` of them are other, and tonal frames of the last `context` frames are at
   most `tonal_ratio` times the voiced ones; or when the low-band kinds meet the same
   rule with `low_max_other` (the full-band tonal check must hold as well).
6. Onset pair (same tonal check): a word that starts with two voiced frames and then a
   stop consonant and a gap never collects three. Two consecutive voiced frames (either
   band) fire when both stand `onset_min_guard_db` over the expected echo, their pitch
   glides as a voice does (from the nearest octave: a held pitch is a note, a jump is
   two sources), their spectrum moves (similarity below `onset_max_stationarity`: a
   note holds still), neither is at the pitch of the agent audio whose echo arrives
   with it (leftover echo is a voice too), and the residual was `onset_drop_db` quieter
   in `onset_quiet` of the `onset_lookback` frames before (an onset out of quiet, not a
   peak in babble).

Defaults were chosen on the labelled set in tests/bargein_eval.py; see benchmarks/README.md.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import webrtcvad

from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.numpy_c import clip as _clip
from media.numpy_c import correlate as _correlate
from media.numpy_c import einsum as _einsum

_max = np.maximum.reduce
_as_strided = np.lib.stride_tricks.as_strided
_sum = np.add.reduce
_NO_TAPS = np.zeros(0, np.float32)

_N = FRAME_SAMPLES  # 320 samples per frame
_FULL = 32768.0**2
_NOISE_E = _N * _FULL * 1e-7  # -70 dBFS frame energy: below anything that matters


def _db(power: float) -> float:
    return 10.0 * math.log10(power + 1e-12)


class EchoCanceller:
    """Removes the agent's echo from the caller channel, 20 ms frame by frame.

    `write_reference` puts played agent audio on a timeline by sample time; `cancel` takes
    a caller frame with the time it was heard and returns the residual. The echo delay (up
    to `max_delay_ms`) comes from an accumulated GCC (300-3400 Hz, partly whitened) between
    the caller and the reference; the echo path after that delay is a `taps`-long filter
    estimated from Welch-averaged cross-spectra, learned only on frames whose residual
    looks like echo alone. `leak_db` tracks the residual relative to the aligned agent
    level on those frames. The state is the echo path of the line: keep it for the call.
    """

    def __init__(self, max_delay_ms: int = 200, taps: int = 128, pre: int = 32,
                 explained_ratio: float = 0.55) -> None:
        if not 0 <= max_delay_ms <= MAX_ECHO_MS:
            raise ValueError(f"max_delay_ms must be within 0..{MAX_ECHO_MS}")
        self.explained_ratio = explained_ratio
        self.taps = taps
        self.pre = pre  # taps kept before the strongest echo (band-limited paths ring)
        self._max_lag = max(1, min(_GCC - _GCC_MIC, (max_delay_ms + 5) * SAMPLE_RATE // 1000))
        # The agent's audio by sample time (mod _RING), stored twice over so that any
        # window is one slice; written (or filled with silence) up to `_written`.
        self._line = np.zeros(2 * _RING, np.float32)
        self._written: int | None = None
        self._ref = self._line[:_WINDOW]  # the window of the last cancel(), newest last
        self._mic = np.zeros(_GCC_MIC, np.float32)
        self._res = np.zeros(_GCC_MIC, np.float32)  # the residual, as _mic
        self._npair = np.zeros((2, _GCC), np.float32)
        self._cs = np.zeros(_GCC + 1)
        self.explained = False  # the last frame's residual correlates with the reference
        self._explained_before = False  # ... and the frame before it
        self._explained_run = 0  # tested frames in a row that were explained
        self._suspect = False  # the last residual was over the expected echo (not learned)
        self.explained_share = 0.0  # ... the share of it explained (0: not tested)
        self._gacc = np.zeros(_GCC)
        self._gpair = np.zeros((2, _GCC), np.float32)
        self._wpair = np.zeros((2, _WELCH), np.float32)
        self._gcc_n = 0
        self._sxm = np.zeros(_WELCH // 2 + 1, np.complex128)
        self._sxx = np.zeros(_WELCH // 2 + 1)
        self._welch_n = 0
        self._frame = 0
        self.h: np.ndarray | None = None  # filter taps for lags start .. start+taps-1
        self._h_rev = _NO_TAPS  # h reversed (a view), for the correlation that applies it
        self._seeded = False  # h is a least-squares fit of one explained residual
        self._fit: tuple[int, int, np.ndarray] = (0, 0, np.zeros(0))
        self.start = 0
        self.delay: int | None = None  # echo delay in samples, once locked
        self.leak_db = 0.0  # residual echo relative to the aligned reference, echo only
        self.ref_energy = 0.0  # energy of the aligned reference frame (last cancel)
        self._expected = 0.0
        # before convergence: echo vs the loudest reference frame, learned only from frames
        # the reference explains (no echo until there is evidence of it)
        self.raw_leak_db = _NO_ECHO_DB
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
        self._silence_until(start)
        self._put(start, ref)
        self._written = max(self._written, end)

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
        first = min(n, _RING - i)
        line = self._line
        line[i : i + first] = line[_RING + i : _RING + i + first] = data[:first]
        if first < n:
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
        self._silence_until(end)
        i = (end - _WINDOW) % _RING
        self._ref = self._line[i : i + _WINDOW]
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
            if self._shift_run >= _SHIFT_FRAMES:  # it did move: move the echo path along
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
        if self.delay is None or (self._welch_n < _CONVERGED and not self._seeded):
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
        self._suspect = (e_e > _SUSPECT_E and loudest > _AUDIBLE_E
                         and e_e > _SUSPECT_MARGIN * self._expected)
        if explain and self._suspect:
            self.explained_share = self._explained_share()
            self.explained = (self.explained_share >= self.explained_ratio
                              and self._echo_not_louder(e_e))
            self._explained_run = self._explained_run + 1 if self.explained else 0
        # Sure echo: explained two frames in a row, the second far better than the caller's
        # voice ever is by chance. Only it seeds or drops a filter and raises the estimate
        # (one seeded on the caller would teach the estimate that the caller is echo).
        sure = (self.explained and self._explained_before
                and self.explained_share >= _SEED_FIT)
        if sure:
            lo, hi, _ = self._fit
            if self.h is None:
                self._seed(m_e)
            elif self._explained_run >= 3 and not (
                    self.start <= (lo + hi) // 2 < self.start + self.taps):
                # the echo comes from lags the filter does not cover: the path moved.
                # Start over (conservative until explained frames seed a new filter).
                self._relock(None)
                self._gacc[:] = 0.0
                self._gcc_n = 0
                self.raw_leak_db = max(self.raw_leak_db, self.leak_db + 6.0)
            elif e_e > _STALE_LEFT * m_e:
                # the filter covers the echo's lags but leaves most of it: the path shifted
                # a little (a far end that plays from arrival when its queue runs dry moves
                # the echo by the lateness, a fraction of a frame): move the filter by the
                # shift that cancels the last 40 ms best, or else correct it by the fit
                moved = self._nudge()
                if moved:
                    self._echo_moved(moved)
                else:
                    self._correct()
        if loudest > _AUDIBLE_E and (self.delay is None
                                     or (self._welch_n < _CONVERGED and not self._seeded)):
            ratio = max(_db(e_e / loudest), _NO_ECHO_DB)
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
        pair = self._npair
        pair[0] = self._ref[-_GCC:]
        pair[1, -_NCC:] = res = self._res[-_NCC:]
        x, y = np.fft.rfft(pair)
        g = np.fft.irfft(x * np.conj(y), _GCC)
        lags = self._max_lag
        c = np.empty(lags + 1)
        c[0] = g[0]
        c[1:] = g[_GCC - 1 : _GCC - lags - 1 : -1]  # c[k]: reference k samples earlier
        cs = self._cs
        np.cumsum(np.square(pair[0], dtype=np.float64), out=cs[1:])
        # energy of the reference window at lag k: cs[G - k] - cs[G - NCC - k]
        e = (cs[_GCC - lags : _GCC + 1] - cs[_GCC - _NCC - lags : _GCC - _NCC + 1])[::-1]
        # (a window of near silence must not divide the FFT's rounding noise by nothing)
        e += 1e-3 * float(_max(e)) + 1.0
        best = int(np.argmax(c / np.sqrt(e)))
        lo, hi = max(0, best - _FIT_PRE), min(lags, best + _FIT_TAPS - _FIT_PRE)
        seg = pair[0, _GCC - _NCC - hi : _GCC - lo].astype(np.float64)
        # a row per lag (as_strided: sliding_window_view's checks cost 30 us here)
        w = _as_strided(seg, (hi - lo + 1, _NCC), (seg.strides[0], seg.strides[0])).copy()
        b = res.astype(np.float64)
        ata = w @ w.T
        atb = w @ b
        ata.flat[:: len(ata) + 1] += 1e-6 * float(np.trace(ata)) / len(ata) + 1.0
        h = np.linalg.solve(ata, atb)
        self._fit = (lo, hi, h)
        return float(np.dot(h, atb)) / (float(np.dot(b, b)) + 1e-9)

    def _echo_not_louder(self, e_e: float) -> bool:
        """The share of the residual the fit explains is no louder than the reference it
        came from, plus `_MAX_ECHO_GAIN_DB`: a line's echo is a loss (G.168 asks hybrids
        for 6 dB at least), so a loud caller whose voice a fit happens to match (same
        voice, same pitch) does not pass for echo."""
        lo, hi, _ = self._fit
        lag = (lo + hi) // 2
        r = self._ref
        seg = r[len(r) - _N - lag : len(r) - lag]
        return self.explained_share * e_e <= 10 ** (_MAX_ECHO_GAIN_DB / 10) * float(np.dot(seg, seg))

    def _seed(self, m_e: float) -> None:
        """No echo path yet, and the reference explains this residual (the raw caller
        channel): take the fitted short filter as the echo path at once. The Welch
        estimate takes over once it has averaged `_SEED_KEEP` updates."""
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
        """The shift (samples, within +-`_NUDGE`) of the filter's echo estimate that leaves
        the least of the last 40 ms of the caller channel, if it leaves a quarter (6 dB)
        of what the unshifted filter leaves or less; else 0."""
        ref, k = self._ref, _NUDGE
        end = len(ref) - self.start
        lo, hi = end - _NCC - self.taps + 1 - k, end + k
        if lo < 0 or hi > len(ref):
            return 0
        est = _correlate(ref[lo:hi], self._h_rev, 0)  # est[j]: at reference sample lo+taps-1+j
        rows = _as_strided(est, (2 * k + 1, _NCC), (est.strides[0], est.strides[0]))
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
        est = _correlate(self._ref[end - _N - self.taps + 1 : end], self._h_rev, 0)
        res = m - est
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
            if ref_e > _N * _FULL * 10**-4.5:
                # (fast only on sure echo: a caller's voice the fit happens to explain
                # half of, a few frames in a row, must not teach the line 15 dB of echo)
                fast = self.explained and self.explained_share >= _SEED_FIT
                self.leak_db += (0.3 if fast else 0.05) * (r_db - self.leak_db)
        f = self._frame
        # Learn fast while locking on, then only often enough to follow a slow drift.
        if m_e > _N * _FULL * 1e-5 and f % (2 if self.delay is None else 3 if self._gcc_n < 25 else 100) == 0:
            self._update_delay()
        if self.delay is not None and f % (1 if self._welch_n < 20 else 5 if self._welch_n < 250 else 10) == 0:
            self._update_filter()

    def _update_delay(self) -> None:
        pair = self._gpair  # reference and caller, transformed in one call
        pair[0] = self._ref[-_GCC:]
        pair[1, -_GCC_MIC:] = self._mic  # aligned with the newest reference samples
        x, mic = np.fft.rfft(pair)
        c = mic * np.conj(x)
        c *= _GCC_BAND / (np.abs(c) + 1e-3) ** 0.8
        self._gacc *= 0.95
        self._gacc += np.fft.irfft(c, _GCC)  # index = echo lag in samples
        self._gcc_n += 1
        if self._gcc_n < 5:
            return
        g = self._gacc[: self._max_lag]
        d = int(np.argmax(g))
        if g[d] < 6.0 * math.sqrt(float(np.mean(g * g))):
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
        x, m = np.fft.rfft(_WELCH_WIN * pair)
        self._sxm *= 0.97
        self._sxm += np.conj(x) * m
        self._sxx *= 0.97
        self._sxx += x.real * x.real + x.imag * x.imag
        self._welch_n += 1
        if self._welch_n % (2 if self._welch_n < 40 else 4) == 0 and (
                not self._seeded or self._welch_n >= _SEED_KEEP):
            hf = self._sxm / (self._sxx + 1e-6 * float(self._sxx.max()) + 1e-3)
            self.h = np.fft.irfft(hf, _WELCH)[: self.taps].astype(np.float32)
            self._h_rev = self.h[::-1]


_GCC = 4096  # delay search: 256 ms of reference
_SHIFT_FRAMES = 3  # frames in a row that match the echo a frame off: the echo moved
_WINDOW = _GCC + _N  # reference samples a caller frame is cancelled against
_RING = 16384  # the reference timeline kept: about 1 s (late caller frames still pair)
_ZEROS = np.zeros(_RING, np.float32)
_GCC_MIC = 768  # against the newest 48 ms of caller audio: echo lags up to 208 ms
MAX_ECHO_MS = (_GCC - _GCC_MIC) * 1000 // SAMPLE_RATE
_GCC_BAND = ((np.fft.rfftfreq(_GCC, 1 / SAMPLE_RATE) >= 300)
             & (np.fft.rfftfreq(_GCC, 1 / SAMPLE_RATE) <= 3400)).astype(np.float64)
_WELCH = 512
_CONVERGED = 20  # filter updates before the echo estimate is trusted
_NCC = 640  # residual samples (40 ms) tested against the reference
_FIT_TAPS, _FIT_PRE = 24, 8  # the filter fitted around the best lag, taps before it
_SEED_KEEP = 12  # Welch updates before its estimate replaces a seeded filter
_NUDGE = 24  # samples (1.5 ms) a stale filter may be moved by at once
_STALE_LEFT = 0.1  # a sure-echo frame the filter leaves more of than this (10 dB): correct it
_MAX_ECHO_GAIN_DB = 3.0  # sure echo is no louder than its reference by more than this
_SEED_FIT = 0.7  # the share explained (two frames in a row) that seeds or drops a filter
_NO_ECHO_DB = -60.0  # the echo estimate of a line with no evidence of echo
_AUDIBLE_E = _N * _FULL * 10**-4.5  # a reference frame over -45 dBFS: echo would show
_SUSPECT_E = _N * _FULL * 10**-5.2  # a residual over -52 dBFS may be the caller: test it
_SUSPECT_MARGIN = 3.0  # ... if it is 5 dB over the expected echo as well
_WELCH_WIN = np.hanning(_WELCH)  # float64: pocketfft is faster on it than on float32


@dataclass
class BargeInConfig:
    """Barge-in settings. Defaults measured on tests/bargein_eval.py (benchmarks/README.md).

    The rule's settings were chosen on the dev split alone by `benchmarks/bargein.py
    --sweep`, then `--sweep-low` for the low-band rule and `--sweep-onset` for the onset
    pair (fewest errors, then the widest margin against noise, then latency): dev 48/48
    detected, 0/131 false, p50 105 ms / p95 207 ms. Held out: 48/48 and 1/131 false (the
    first note of music), p95 257 ms; redraw 48/48, 0 false, p95 248 ms. Looser
    full-band points (no webrtcvad, no whole-frame check) let babble and first notes of
    music through on other splits; the onset pair's spectral-flux check was set on fresh
    draws of the set, where without it music's first notes fire it. The gate and
    canceller settings were set by hand: -50 dBFS is under the quietest callers' vowels
    (-35 dBFS active level), 6 dB over the expected echo keeps 0-120 ms echo out at every
    delay.
    """

    vad_aggressiveness: int = 2  # webrtcvad on the residual, for voiced frames
    min_level_dbfs: float = -50.0  # residual level a caller frame must reach
    echo_margin_db: float = 6.0  # residual above the expected leftover echo
    echo_tail_ms: int = 200  # longest echo delay the canceller looks for
    echo_explained: float = 0.55  # share of a residual the reference explains: echo
    min_periodicity: float = 0.85  # pitch correlation (10 ms template) of a voiced frame
    min_frame_periodicity: float = 0.7  # the same over the whole 20 ms frame
    min_rise_db: float = 14.0  # voiced frames stand this far above the recent quietest
    floor_ms: int = 400  # ... residual frame of the last `floor_ms`
    require_vad: bool = True  # voiced frames need webrtcvad's yes as well
    tonal_peakiness: float = 0.99  # energy share of the 6 strongest bins: a tone
    max_rumble: float = 0.8  # a frame with more of its energy below 175 Hz is a thump
    # (dev flows: door slams 0.99 median; recorded voices' voiced frames 0.37 at the 95th
    # percentile, synthetic 0.33)
    tonal_stationarity: float = 0.975  # spectral similarity held over three frames
    pitch_hold: float = 0.001  # pitch equal to the last frame's (or a simple ratio)
    window: int = 6  # frames (120 ms) in which ...
    min_voiced: int = 3  # ... this many voiced frames fire ...
    max_other: int = 3  # ... if at most this many are noise-like
    context: int = 25  # frames (500 ms) over which tonal frames are counted
    tonal_ratio: float = 0.5  # fire only if tonal frames <= ratio * voiced, in context
    low_path: bool = True  # second rule on pitch measured below `low_cutoff_hz`
    low_cutoff_hz: float = 1000.0  # low-pass of the residual for the low-band pitch
    low_min_periodicity: float = 0.9  # low-band `min_periodicity`
    low_min_frame_periodicity: float = 0.7  # low-band `min_frame_periodicity`
    low_max_other: int = 2  # low-band `max_other`
    onset_pair: bool = True  # fast path: two voiced frames rising out of quiet
    onset_lookback: int = 8  # frames before the pair in which ...
    onset_quiet: int = 3  # ... this many are `onset_drop_db` below the pair's quieter frame
    onset_drop_db: float = 10.0
    onset_min_guard_db: float = 10.0  # both frames this far above the expected echo
    onset_min_glide: float = 0.002  # pitch change between the two frames (from the nearest
    onset_max_glide: float = 0.1  # octave): more than a held note, less than two sources
    echo_pitch_tol: float = 0.04  # a pitch this close to the agent's (or an octave) is echo
    echo_voice_guard_db: float = 10.0  # voiced at the echo's own pitch (within
    echo_voice_tol: float = 0.015  # this) and less than this over the echo: leftover echo
    onset_max_stationarity: float = 0.975  # spectral similarity of the two: below a held note

    def __post_init__(self) -> None:
        if not 0 <= self.vad_aggressiveness <= 3:
            raise ValueError("vad_aggressiveness must be 0..3")
        if not 1 <= self.min_voiced <= self.window:
            raise ValueError("need 1 <= min_voiced <= window")
        if self.context < self.window:
            raise ValueError("context must be at least window")
        if not 0 <= self.echo_tail_ms <= MAX_ECHO_MS:
            raise ValueError(f"echo_tail_ms must be within 0..{MAX_ECHO_MS}")
        if self.floor_ms < 20:
            raise ValueError("floor_ms must be at least one frame (20 ms)")
        if not 100.0 <= self.low_cutoff_hz <= 4000.0:
            raise ValueError("low_cutoff_hz must be within 100..4000")
        if not 0 <= self.onset_quiet <= self.onset_lookback <= self.context - 2:
            raise ValueError("need 0 <= onset_quiet <= onset_lookback <= context - 2")


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


GATED, VOICED, TONAL, OTHER = 0, 1, 2, 3
KIND_MARKS = ".VT-"  # one character per kind, for timelines


class DecisionRule:
    """Frame kinds and the firing rule, from `FrameFeatures` alone.

    Split from the signal processing so that benchmarks/bargein.py can replay recorded
    features under other settings.
    """

    def __init__(self, config: BargeInConfig) -> None:
        self.config = config
        self._full = _KindTracker(config, low=False)
        self._low = _KindTracker(config, low=True)
        self._kinds = np.zeros(config.context, np.int8)
        self._low_kinds = np.zeros(config.context, np.int8)
        self._levels = np.full(config.context, np.inf)  # residual level (inf: before reset)
        self._lags = np.zeros(config.context)  # pitch of onset-eligible voiced frames, else 0
        self._i = 0
        self.fired = False

    def reset(self) -> None:
        self._kinds[:] = GATED
        self._low_kinds[:] = GATED
        self._levels[:] = np.inf
        self._lags[:] = 0.0
        self.fired = False

    def kind(self, f: FrameFeatures) -> int:
        """The (full-band) kind of one frame (updates the frame-to-frame state)."""
        return self._full.kind(f)

    def low_kind(self, f: FrameFeatures) -> int:
        """The low-band kind of one frame (updates its own frame-to-frame state)."""
        return self._low.kind(f)

    def push(self, f: FrameFeatures) -> tuple[int, bool]:
        """One frame: (its kind, True if the caller barges in now, once until reset)."""
        cfg = self.config
        j = self._i % cfg.context
        self._i += 1
        k, lk = self._kinds, self._low_kinds
        self._levels[j] = f.level_dbfs
        if not f.active:  # most frames: keep this path short
            self._full.gated()
            self._low.gated()
            k[j] = lk[j] = GATED
            self._lags[j] = 0.0
            return GATED, False
        k[j] = kind = self.kind(f)
        lk[j] = self.low_kind(f) if cfg.low_path else GATED
        self._lags[j] = self._onset_lag(f, kind, int(lk[j]))
        if self.fired or not _tonal_ok(k, cfg):
            return kind, False
        idx = np.arange(j - cfg.window + 1, j + 1) % cfg.context
        if not (_window_ok(k[idx], cfg.min_voiced, cfg.max_other)
                or (cfg.low_path and _window_ok(lk[idx], cfg.min_voiced, cfg.low_max_other)
                    and _tonal_ok(lk, cfg))
                or (cfg.onset_pair and self._onset(j, f))):
            return kind, False
        self.fired = True
        return kind, True

    def _onset_lag(self, f: FrameFeatures, kind: int, low_kind: int) -> float:
        """The pitch lag of a frame that may be half of an onset pair, else 0: voiced (either
        band), well above the expected echo, and not at the pitch of the agent's echo."""
        cfg = self.config
        if f.guard_db < cfg.onset_min_guard_db:
            return 0.0
        lag = f.pitch_lag if kind == VOICED else f.low_pitch_lag if low_kind == VOICED else 0.0
        return 0.0 if _at_echo_pitch(lag, f, cfg.echo_pitch_tol) else lag

    def _onset(self, j: int, f: FrameFeatures) -> bool:
        """Two eligible voiced frames (this one, `f`, and the one before) whose pitch glides
        and spectrum moves as a voice does, after a stretch in which the residual was
        clearly quieter."""
        cfg = self.config
        n = cfg.context
        a, b = self._lags[(j - 1) % n], self._lags[j]
        if not (a and b and f.stationarity < cfg.onset_max_stationarity):
            return False
        glide = float(np.min(np.abs(b / a / _OCTAVES - 1.0)))  # the estimate slips octaves
        if not cfg.onset_min_glide < glide <= cfg.onset_max_glide:
            return False
        before = self._levels[np.arange(j - 1 - cfg.onset_lookback, j - 1) % n]
        level = min(self._levels[j], self._levels[(j - 1) % n])
        return int(np.count_nonzero(before <= level - cfg.onset_drop_db)) >= cfg.onset_quiet


def _at_echo_pitch(lag: float, f: FrameFeatures, tol: float) -> bool:
    """The pitch `lag` is within `tol` of the pitch (or an octave of it) of the agent audio
    whose echo arrives with frame `f`."""
    return bool(lag and f.echo_lag and float(np.min(np.abs(lag / f.echo_lag / _OCTAVES - 1.0))
                                             ) < tol)


def _window_ok(recent: np.ndarray, min_voiced: int, max_other: int) -> bool:
    return (int(np.count_nonzero(recent == VOICED)) >= min_voiced
            and int(np.count_nonzero(recent == OTHER)) <= max_other)


def _tonal_ok(k: np.ndarray, cfg: BargeInConfig) -> bool:
    return bool(np.count_nonzero(k == TONAL) <= cfg.tonal_ratio * np.count_nonzero(k == VOICED))


class _KindTracker:
    """Frame kinds from one set of pitch measures (full band or low band) and its state."""

    def __init__(self, config: BargeInConfig, low: bool) -> None:
        self.config = config
        self.low = low
        self._stat = [0.0, 0.0]  # stationarity of the two frames before (0 if gated)
        self._prev_lag = 0.0  # pitch of the frame before, if it was periodic

    def gated(self) -> None:
        """A frame stopped by the gate: the frame-to-frame state starts over."""
        self._stat = [0.0, 0.0]
        self._prev_lag = 0.0

    def kind(self, f: FrameFeatures) -> int:
        cfg = self.config
        if not f.active:
            self.gated()
            return GATED
        if self.low:
            per, fper, lag = f.low_periodicity, f.low_frame_periodicity, f.low_pitch_lag
            min_per, min_fper = cfg.low_min_periodicity, cfg.low_min_frame_periodicity
        else:
            per, fper, lag = f.periodicity, f.frame_periodicity, f.pitch_lag
            min_per, min_fper = cfg.min_periodicity, cfg.min_frame_periodicity
        steady = (f.stationarity + self._stat[0] + self._stat[1]) / 3.0 >= cfg.tonal_stationarity
        self._stat = [f.stationarity, self._stat[0]]
        speech = f.vad or not cfg.require_vad
        held = False
        if speech and per >= _MIN_PERIODIC:
            if self._prev_lag:
                r = lag / self._prev_lag
                held = bool(np.min(np.abs(r / _RATIOS - 1.0)) < cfg.pitch_hold)
            self._prev_lag = lag
        else:
            self._prev_lag = 0.0
        if steady or held or f.peakiness >= cfg.tonal_peakiness:
            return TONAL
        if f.rumble > cfg.max_rumble:
            return OTHER
        if speech and per >= min_per and fper >= min_fper and f.rise_db >= cfg.min_rise_db:
            if f.guard_db < cfg.echo_voice_guard_db and _at_echo_pitch(lag, f, cfg.echo_voice_tol):
                return OTHER  # leftover echo: the agent's own voice, barely over the guess
            return VOICED
        return OTHER


class BargeInDetector:
    """Decides, frame by frame, whether the caller is talking over the agent."""

    def __init__(self, config: BargeInConfig | None = None) -> None:
        self.config = config = config or BargeInConfig()
        self._vad = webrtcvad.Vad(config.vad_aggressiveness)
        self._aec = EchoCanceller(max_delay_ms=config.echo_tail_ms,
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
        return FrameFeatures(level, guard, rise, True, bool(vad), per, n20, lag, peak, stat,
                             lper, ln20, llag, echo_lag, rumble)


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
_COLS = np.arange(_N)
_LAGS = np.arange(_MIN_LAG, _MAX_LAG + 1)


def _periodicity(win: np.ndarray) -> tuple[float, int]:
    """Best normalised cross-correlation of a 10 ms template with the audio one pitch lag on.

    A short template keeps gliding pitch from smearing the peak. Returns (peak, lag).
    """
    x = win[len(win) - _SPAN :]
    cross = _correlate(x[_MIN_LAG:], x[:_TEMPLATE], 0)  # np.correlate's "valid"
    c = (x * x).astype(np.float64).cumsum()
    e0 = c[_TEMPLATE - 1]
    el = c[_LAGS + _TEMPLATE - 1] - c[_LAGS - 1]
    nccf = cross / np.sqrt(e0 * el + 1e3)
    i = int(nccf.argmax())
    return float(nccf[i]), int(_LAGS[i])


def _frame_periodicity(win: np.ndarray, lag: int) -> tuple[float, float]:
    """Correlation of the whole 20 ms frame with itself `lag` +-2 samples back.

    Returns the best value and the lag refined to a fraction of a sample (parabola).
    """
    cur = win[_N:]
    lags = np.arange(max(_MIN_LAG, lag - 2), min(_N, lag + 2) + 1)
    segs = win[(_N - lags)[:, None] + _COLS]
    num = segs @ cur
    den = np.sqrt(_einsum("ij,ij->i", segs, segs) * float(np.dot(cur, cur)) + 1e3)
    v = num / den
    i = int(v.argmax())
    frac = 0.0
    if 0 < i < len(v) - 1:
        curv = v[i - 1] - 2 * v[i] + v[i + 1]
        if curv < 0:
            frac = min(0.5, max(-0.5, 0.5 * (v[i - 1] - v[i + 1]) / curv))
    return float(v[i]), float(lags[i] + frac)


def _check(frame: np.ndarray) -> np.ndarray:
    if not isinstance(frame, np.ndarray) or frame.shape != (_N,):
        raise ValueError(f"expected a frame of {_N} int16 samples, got "
                         f"{getattr(frame, 'shape', type(frame))}")
    return frame
