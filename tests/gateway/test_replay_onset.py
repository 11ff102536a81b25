"""The replay report's `speech_onset_ms` is the audible onset of the caller's speech: the
first 10 ms window over the caller's noise floor by 20 dB (within a frame), on generated
audio whose onset is known."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.testing import replay_async, speech_onset_ms, window_levels
from media.frames import SAMPLE_RATE
from tests.kit.speech import speech, trim_silence

FLOOR_DBFS = -60.0


def line(total_s: float, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 32768 * 10 ** (FLOOR_DBFS / 20), int(total_s * SAMPLE_RATE))


def place(out: np.ndarray, at_ms: float, pcm: np.ndarray, gain_db: float = 0.0) -> None:
    s = int(at_ms * SAMPLE_RATE / 1000)
    n = min(len(pcm), len(out) - s)
    out[s : s + n] += pcm[:n] * 10 ** (gain_db / 20)


def audible_onset_ms(pcm: np.ndarray, after_ms: float) -> float:
    """The truth by the definition, from the voice alone (no noise): its first 10 ms over
    the floor by 20 dB."""
    levels = window_levels(pcm)
    i = int(after_ms // 10)
    while levels[i] <= FLOOR_DBFS + 20:
        i += 1
    return i * 10.0


@pytest.mark.parametrize(("text", "voice", "at_ms", "gain_db"), [
    ("wait, I have a question", "en-us", 3000, 0.0),
    ("hold on a second", "en+f3", 2470, -15.0),
    ("no, stop", "en-us", 4130, -6.0),
    ("hmm, actually tell me the time", "en+m3", 1510, 0.0),
])
def test_onset_is_the_first_window_over_the_floor(text, voice, at_ms, gain_db):
    words = trim_silence(speech(text, voice=voice)).astype(np.float64)
    voice_only = np.zeros(int(6 * SAMPLE_RATE))
    place(voice_only, at_ms, words, gain_db)
    truth = audible_onset_ms(voice_only, at_ms - 100)
    caller = np.clip(line(6) + voice_only, -32768, 32767).astype(np.int16)
    for interrupt_after in (80, 160, 250):  # wherever the barge-in fell in the first word
        got = speech_onset_ms(caller, truth + interrupt_after)
        assert abs(got - truth) <= 20, (got, truth)


def test_onset_with_a_slow_fade_in_is_where_it_becomes_audible():
    """A voice that swells slowly: VAD may start late or early; the onset is where it is
    20 dB over the floor."""
    words = trim_silence(speech("well, I was wondering", voice="en-us")).astype(np.float64)
    ramp = np.ones(len(words))
    n = int(0.3 * SAMPLE_RATE)
    ramp[:n] = np.linspace(0.0, 1.0, n) ** 3
    voice_only = np.zeros(int(6 * SAMPLE_RATE))
    place(voice_only, 2000, words * ramp)
    truth = audible_onset_ms(voice_only, 1900)
    caller = np.clip(line(6, seed=2) + voice_only, -32768, 32767).astype(np.int16)
    assert abs(speech_onset_ms(caller, truth + 200) - truth) <= 20


async def test_replay_report_gives_the_audible_onset():
    """Caller speech over the demo agent's greeting: the report's onset is the audible one."""
    words = trim_silence(speech("wait, I have a question please", voice="en-us"))
    voice_only = np.zeros(int(8 * SAMPLE_RATE))
    place(voice_only, 3000, words.astype(np.float64))
    truth = audible_onset_ms(voice_only, 2900)
    caller = np.clip(line(8, seed=3) + voice_only, -32768, 32767).astype(np.int16)
    r = await replay_async(caller)
    assert len(r.interrupts) == 1
    it = r.interrupts[0]
    assert abs(it["speech_onset_ms"] - truth) <= 20, (it, truth)
    assert it["latency_ms"] == round(it["at_ms"] - it["speech_onset_ms"], 1)
