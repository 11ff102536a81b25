"""`VoiceEvidence`: the measures a barge-in pause weighs before duration confirms it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from media.bargein import GLIDE, OTHER, TONAL, VOICED, BargeInConfig
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
    ev = VoiceEvidence(BargeInConfig())
    _fill(ev, speech("Hold on, that is not what I asked for"), [VOICED, OTHER] * FRAMES)
    assert ev.voiced == FRAMES // 2
    assert ev.flutter_db() < 13.0
    assert ev.voice()


def test_too_few_voiced_frames_is_no_voice() -> None:
    ev = VoiceEvidence(BargeInConfig())
    _fill(ev, speech("Hold on, that is not what I asked for"), [VOICED] * 2 + [OTHER] * FRAMES)
    assert ev.voiced == 2 and not ev.voice()


def test_a_level_that_switches_at_20_hz_flutters() -> None:
    ev = VoiceEvidence(BargeInConfig())
    _fill(ev, _bell(), [VOICED] * FRAMES)  # (even if every frame passed for voiced)
    assert ev.flutter_db() > 13.0
    assert not ev.voice()


def test_short_pauses_measure_nothing_and_loud_silent_loud_flutters() -> None:
    ev = VoiceEvidence(replace(BargeInConfig(), confirm_min_voiced=0))
    ev.add(np.full(FRAME_SAMPLES, 3000, np.int16), OTHER)
    ev.add(np.zeros(FRAME_SAMPLES, np.int16), OTHER)
    assert ev.flutter_db() == 0.0  # fewer than three frames
    ev.add(np.full(FRAME_SAMPLES, 3000, np.int16), OTHER)
    assert ev.flutter_db() > 13.0  # loud, silent, loud


def _steady(level_db: float, frames: int) -> list[np.ndarray]:
    """Frames of a sound at one level (noise, so that it is no tone)."""
    rng = np.random.default_rng(3)
    amp = 32768.0 * 10 ** (level_db / 20)
    return [(rng.standard_normal(FRAME_SAMPLES) * amp).astype(np.int16)
            for _ in range(frames)]


def test_a_voice_that_dips_between_words_is_one_voice() -> None:
    """Music and a room of voices go on; one voice stops between words: a frame 20 dB or
    more under the pause's loud part."""
    ev = VoiceEvidence(BargeInConfig())
    for i, frame in enumerate(_steady(-25.0, FRAMES)):
        ev.add(frame, VOICED if i % 8 == 0 else OTHER, -25.0)
    assert ev.voiced == 4 and ev.dips() == 0 and not ev.fluent()
    assert not ev.voice()  # pitched, flutter-free, but it never stopped: music, babble
    ev.add(_steady(-50.0, 1)[0], OTHER, -50.0)
    assert ev.dips() == 1 and ev.voice()


def test_a_fluent_voice_needs_no_dip_but_music_is_tonal() -> None:
    """Without a dip, many voiced frames and few tonal ones are a voice running on (a
    recorded prompt: 13 voiced, 3 tonal in 640 ms); music gives tonal frames."""
    ev = VoiceEvidence(BargeInConfig())
    for i, frame in enumerate(_steady(-20.0, FRAMES)):
        ev.add(frame, VOICED if i < 13 else TONAL if i < 16 else OTHER, -20.0)
    assert ev.dips() == 0 and ev.fluent() and ev.voice()
    music = VoiceEvidence(BargeInConfig())
    for i, frame in enumerate(_steady(-20.0, FRAMES)):
        music.add(frame, VOICED if i % 3 == 0 else TONAL, -20.0)
    assert music.voiced == 11 and music.tonal == 21
    assert not music.fluent() and not music.voice()


def test_glides_count_toward_a_fluent_voice() -> None:
    """An espeak caller on a phone line: 7 voiced, 6 glide and 6 tonal frames (its held
    vowels) in 640 ms and no dip. Glides are pitch that moves as a voice's: with them it
    runs on as one voice (it resumed and paused again a second later before)."""
    ev = VoiceEvidence(BargeInConfig())
    kinds = [VOICED] * 7 + [GLIDE] * 6 + [TONAL] * 6 + [OTHER] * 13
    for frame, kind in zip(_steady(-20.0, FRAMES), kinds, strict=True):
        ev.add(frame, kind, -20.0)
    assert ev.voiced == 7 and ev.glides == 6 and ev.dips() == 0
    assert ev.fluent() and ev.voice()
