"""`VoiceEvidence`: the two measures a barge-in pause weighs before duration confirms it."""

from __future__ import annotations

import numpy as np

from media.bargein import OTHER, VOICED
from media.bargein.voice_evidence import VoiceEvidence
from media.frames import FRAME_SAMPLES, SAMPLE_RATE, split_frames
from tests.kit.speech import speech

FRAMES = 32  # 640 ms: the default confirmation


def _fill(ev: VoiceEvidence, audio: np.ndarray, kinds: list[int]) -> None:
    for frame, kind in zip(split_frames(audio)[:FRAMES], kinds, strict=False):
        ev.add(frame, kind)


def _bell(seconds: float = 1.0) -> np.ndarray:
    """Two tones switched on and off at 20 Hz (a phone's bell)."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    on = np.sin(2 * np.pi * 20 * t) > 0
    x = (np.sin(2 * np.pi * 1000 * t) + 0.5 * np.sin(2 * np.pi * 1500 * t)) * on * 6000
    return (x + np.random.default_rng(1).standard_normal(len(t)) * 20).astype(np.int16)


def test_a_voice_with_voiced_frames_is_a_voice() -> None:
    ev = VoiceEvidence(min_voiced=3, max_flutter_db=13.0)
    _fill(ev, speech("Hold on, that is not what I asked for"), [VOICED, OTHER] * FRAMES)
    assert ev.voiced == FRAMES // 2
    assert ev.flutter_db() < 13.0
    assert ev.voice()


def test_too_few_voiced_frames_is_no_voice() -> None:
    ev = VoiceEvidence(min_voiced=3, max_flutter_db=13.0)
    _fill(ev, speech("Hold on, that is not what I asked for"), [VOICED] * 2 + [OTHER] * FRAMES)
    assert ev.voiced == 2 and not ev.voice()


def test_a_level_that_switches_at_20_hz_flutters() -> None:
    ev = VoiceEvidence(min_voiced=3, max_flutter_db=13.0)
    _fill(ev, _bell(), [VOICED] * FRAMES)  # (even if every frame passed for voiced)
    assert ev.flutter_db() > 13.0
    assert not ev.voice()


def test_short_pauses_measure_nothing_and_loud_silent_loud_flutters() -> None:
    ev = VoiceEvidence(min_voiced=0, max_flutter_db=13.0)
    ev.add(np.full(FRAME_SAMPLES, 3000, np.int16), OTHER)
    ev.add(np.zeros(FRAME_SAMPLES, np.int16), OTHER)
    assert ev.flutter_db() == 0.0  # fewer than three frames
    ev.add(np.full(FRAME_SAMPLES, 3000, np.int16), OTHER)
    assert ev.flutter_db() > 13.0  # loud, silent, loud
