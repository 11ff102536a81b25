"""Barge-in settings (`BargeInConfig`), measured defaults."""

from __future__ import annotations

from dataclasses import dataclass, field

from media.bargein.canceller import MAX_ECHO_MS, CancellerConfig


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
    echo_tail_ms: int = 200  # longest echo delay the canceller looks for (a SIP call's:
    # 350, `gateway.transports.rtp.ECHO_TAIL_MS`, the phone's jitter buffer on the line)
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
    echo_unexplained: float = 0.15  # ... unless the agent's audio explains less of it than this
    echo_voice_guard_db: float = 10.0  # voiced at the echo's own pitch (within
    echo_voice_tol: float = 0.015  # this) and less than this over the echo: leftover echo
    onset_max_stationarity: float = 0.975  # spectral similarity of the two: below a held note
    # an eager pause (`DecisionRule.eager`: the agent pauses, nothing is interrupted until
    # the pause is confirmed) needs less than a fire: `eager_frames` frames in a row (0: off)
    # of a sound webrtcvad calls speech, not tonal, with some pitch in either band, well over
    # the expected echo and the recent floor, that the agent's audio does not explain
    eager_frames: int = 2
    eager_min_periodicity: float = 0.6
    eager_guard_db: float = 15.0
    eager_rise_db: float = 20.0
    eager_max_share: float = 0.4  # (the caller's voice: 0.15 median; echo: 0.98)
    # a pause that duration alone would confirm needs a voice (`media.bargein.voice_evidence`):
    confirm_min_voiced: int = 3  # voiced frames since the pause (babble: 1, dev speech: >= 4)
    confirm_max_flutter_db: float = 13.0  # level steps' spread (a 20 Hz bell: 15-19 dB)
    confirm_dip_db: float = 20.0  # a dip: the residual this far under the pause's loud part
    confirm_fluent_voiced: int = 6  # with no dip, this many voiced frames (tonal ones at
    # most half as many) are a voice that runs on (music: tonal; babble: few voiced)
    # the echo canceller's other constants (its delay span and explained share are the
    # `echo_tail_ms` and `echo_explained` above)
    canceller: CancellerConfig = field(default_factory=CancellerConfig)

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

