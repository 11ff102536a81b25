"""Barge-in detection: is the caller really talking over the agent?

The voice loop hands the detector every agent frame as it is played out (the exact echo
reference) and every caller frame while agent audio is playing, each with its time on the
far end's 20 ms frame grid (`media.far_end_clock`), which pairs them however the network
delivers them. Per 20 ms tick:

1. Echo canceller (`EchoCanceller`): a line starts as a line without echo, so a caller
   who talks in the first 100 ms of the agent's first reply is heard as fast as one a
   minute in. A residual that would pass the gate is tested against the reference (a
   24-tap least-squares fit around the best-matching lag, up to `echo_tail_ms` back): when the
   agent's audio explains most of it, it is echo, gated, and only such frames teach the
   estimate that there is echo; two in a row seed the filter with that fit at once. The
   caller's voice, which the reference does not explain, never raises the estimate (an
   estimate that learned from the residual's level learned the caller as echo, and the
   first reply's barge-ins took 0.6-1.8 s). The delay search (band-limited, phase-
   weighted cross-correlation, 4096-point FFTs for a 200 ms tail, longer ones for a
   SIP call's 350 ms, every frame until it locks) and a
   128-tap filter from averaged cross-spectra (Welch, 512-point) take over; three
   explained residuals in a row from lags the filter does not cover mean the path moved:
   the filter is dropped and seeded anew. Once the filter is trusted, a fit from a lag it
   does not cover counts as echo only when the fit before agreed on that lag (within
   `lag_agree`): a caller whose voice a fit matches by chance (the agent's own voice) is
   matched at lags that wander, and used to move a learned path away and be gated until
   it was learned again. About 20-30 dB of echo is removed.
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
   Neither this nor the onset pair's echo-pitch check calls a frame echo when the
   canceller tested it and the agent's audio explains less than `echo_unexplained` of it
   (a caller whose pitch happens to sit on the echo's octave). *glide*: a frame that would
   be tonal by its steady spectrum or repeated pitch, passes the voiced tests, and whose
   pitch over the last five frames moves one way by 0.6-15 % (espeak holds a vowel's
   spectrum as still as a note's, but its pitch glides; a note's is held, vibrato turns
   back). It fires as a voiced frame does, but is no evidence for a confirmation
   (`media.bargein.voice_evidence` counts voiced frames only).
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

from media.bargein.canceller import MAX_ECHO_MS, EchoCanceller
from media.bargein.config import BargeInConfig
from media.bargein.detector import BargeInDetector
from media.bargein.features import FrameFeatures
from media.bargein.rule import GATED, GLIDE, KIND_MARKS, OTHER, TONAL, VOICED, DecisionRule

__all__ = ["GATED", "GLIDE", "KIND_MARKS", "MAX_ECHO_MS", "OTHER", "TONAL", "VOICED",
           "BargeInConfig", "BargeInDetector", "DecisionRule", "EchoCanceller", "FrameFeatures"]
