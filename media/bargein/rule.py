"""Frame kinds and the firing rule of the barge-in detector, from `FrameFeatures` alone."""

from __future__ import annotations

import numpy as np

from media.bargein.config import BargeInConfig
from media.bargein.features import _MIN_PERIODIC, _OCTAVES, _RATIOS, FrameFeatures

GATED, VOICED, TONAL, OTHER, GLIDE = 0, 1, 2, 3, 4
KIND_MARKS = ".VT-G"  # one character per kind, for timelines


class DecisionRule:
    """Frame kinds, the firing rule and the eager pause, from `FrameFeatures` alone.

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
        self._loud = 0  # frames in a row of a loud, voice-like sound (`eager`)
        self.fired = False
        self.eager = False  # the last frame calls for an eager pause (not a fire)

    def reset(self) -> None:
        self._kinds[:] = GATED
        self._low_kinds[:] = GATED
        self._levels[:] = np.inf
        self._lags[:] = 0.0
        self._loud = 0
        self.fired = False
        self.eager = False

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
            self._loud = 0
            self.eager = False
            return GATED, False
        k[j] = kind = self.kind(f)
        lk[j] = self.low_kind(f) if cfg.low_path else GATED
        self._lags[j] = self._onset_lag(f, kind, int(lk[j]))
        self.eager = False
        if self.fired:
            return kind, False
        self._loud = self._loud + 1 if self._loud_voice(f, kind) else 0
        if not _tonal_ok(k, cfg):
            return kind, False
        self.eager = 0 < cfg.eager_frames <= self._loud
        idx = np.arange(j - cfg.window + 1, j + 1) % cfg.context
        if not (_window_ok(k[idx], cfg.min_voiced, cfg.max_other)
                or (cfg.low_path and _window_ok(lk[idx], cfg.min_voiced, cfg.low_max_other)
                    and _tonal_ok(lk, cfg))
                or (cfg.onset_pair and self._onset(j, f))):
            return kind, False
        self.fired = True
        return kind, True

    def _loud_voice(self, f: FrameFeatures, kind: int) -> bool:
        """A frame of an eager pause's run: speech to webrtcvad, not tonal, some pitch in
        either band, well over the expected echo and the recent floor, and not explained by
        the agent's audio."""
        cfg = self.config
        return (f.vad and kind != TONAL and f.guard_db >= cfg.eager_guard_db
                and f.rise_db >= cfg.eager_rise_db and f.rumble <= cfg.max_rumble
                and (f.periodicity >= cfg.eager_min_periodicity
                     or f.low_periodicity >= cfg.eager_min_periodicity)
                and f.echo_share < cfg.eager_max_share)

    def _onset_lag(self, f: FrameFeatures, kind: int, low_kind: int) -> float:
        """The pitch lag of a frame that may be half of an onset pair, else 0: voiced (either
        band), well above the expected echo, and not at the pitch of the agent's echo."""
        cfg = self.config
        if f.guard_db < cfg.onset_min_guard_db:
            return 0.0
        lag = f.pitch_lag if kind == VOICED else f.low_pitch_lag if low_kind == VOICED else 0.0
        return 0.0 if _at_echo_pitch(lag, f, cfg.echo_pitch_tol, cfg.echo_unexplained) else lag

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


def _at_echo_pitch(lag: float, f: FrameFeatures, tol: float, unexplained: float) -> bool:
    """The pitch `lag` is within `tol` of the pitch (or an octave of it) of the agent audio
    whose echo arrives with frame `f`, and the agent's audio does not plainly fail to
    explain the frame (a share under `unexplained`: a caller whose pitch happens to match)."""
    if 0.0 <= f.echo_share < unexplained:
        return False
    return bool(lag and f.echo_lag and float(np.min(np.abs(lag / f.echo_lag / _OCTAVES - 1.0))
                                             ) < tol)


GLIDE_FRAMES = 5  # a held vowel's pitch moves one way over this many frames ...
GLIDE_MIN = 0.006  # ... by at least this much in all (a note is held: `pitch_hold`)
GLIDE_MAX = 0.15  # ... and at most this much
GLIDE_BACK = 0.005  # a step back by more than this: not one way


def _glides(lags: list[float]) -> bool:
    """The pitch of the last frames moves one way (a spoken vowel's glide), not held."""
    if not all(lags):
        return False
    ref = lags[-1]
    rel = [_unslip(x, ref) for x in lags]
    steps = np.diff(rel) * np.sign(rel[-1] - rel[0])
    if float(steps.min()) < -GLIDE_BACK:  # turns back: vibrato, not a glide
        return False
    return GLIDE_MIN <= abs(rel[-1] - rel[0]) <= GLIDE_MAX


def _unslip(lag: float, ref: float) -> float:
    """`lag` relative to `ref`, an octave slip undone (1.0: the same pitch)."""
    r = lag / ref
    return float(r / _OCTAVES[np.argmin(np.abs(r / _OCTAVES - 1.0))])


def _window_ok(recent: np.ndarray, min_voiced: int, max_other: int) -> bool:
    return (int(np.count_nonzero((recent == VOICED) | (recent == GLIDE))) >= min_voiced
            and int(np.count_nonzero(recent == OTHER)) <= max_other)


def _tonal_ok(k: np.ndarray, cfg: BargeInConfig) -> bool:
    return bool(np.count_nonzero(k == TONAL)
                <= cfg.tonal_ratio * np.count_nonzero((k == VOICED) | (k == GLIDE)))


class _KindTracker:
    """Frame kinds from one set of pitch measures (full band or low band) and its state."""

    def __init__(self, config: BargeInConfig, low: bool) -> None:
        self.config = config
        self.low = low
        self._stat = [0.0, 0.0]  # stationarity of the two frames before (0 if gated)
        self._prev_lag = 0.0  # pitch of the frame before, if it was periodic
        self._lags = [0.0] * GLIDE_FRAMES  # pitch of the last frames (0: not periodic)

    def gated(self) -> None:
        """A frame stopped by the gate: the frame-to-frame state starts over."""
        self._stat = [0.0, 0.0]
        self._prev_lag = 0.0
        self._lags = [0.0] * GLIDE_FRAMES

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
        self._lags = [*self._lags[1:], lag if speech and per >= _MIN_PERIODIC else 0.0]
        if (steady or held) and f.peakiness < cfg.tonal_peakiness and _glides(self._lags):
            if (speech and per >= min_per and fper >= min_fper and f.rise_db >= cfg.min_rise_db
                    and not _at_echo_pitch(lag, f, cfg.echo_pitch_tol, cfg.echo_unexplained)):
                return GLIDE
        if steady or held or f.peakiness >= cfg.tonal_peakiness:
            return TONAL
        if f.rumble > cfg.max_rumble:
            return OTHER
        if speech and per >= min_per and fper >= min_fper and f.rise_db >= cfg.min_rise_db:
            if f.guard_db < cfg.echo_voice_guard_db and _at_echo_pitch(
                    lag, f, cfg.echo_voice_tol, cfg.echo_unexplained):
                return OTHER  # leftover echo: the agent's own voice, barely over the guess
            return VOICED
        return OTHER

