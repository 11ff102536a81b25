"""VAD hysteresis and turn-end detection on synthetic speech + silence (no real time)."""

from __future__ import annotations

import numpy as np
import pytest

from media.frames import FRAME_MS, split_frames
from media.turn import TurnDetector
from media.vad import Vad, VadConfig
from tests.kit.speech import needs_espeak, speech, trim_silence


def _silence(ms: int) -> np.ndarray:
    return np.zeros(16 * ms, np.int16)


def _utterance() -> np.ndarray:
    return trim_silence(speech("Hello there, I would like to book a table.", speed=170))


def _events(vad: Vad, pcm: np.ndarray) -> list[tuple[int, str]]:
    out = []
    for i, frame in enumerate(split_frames(pcm)):
        ev = vad.process(frame)
        if ev:
            out.append(((i + 1) * FRAME_MS, ev))
    return out


@needs_espeak
def test_start_waits_for_start_ms_of_voicing() -> None:
    pcm = np.concatenate((_silence(500), _utterance(), _silence(1000)))
    starts = {}
    for start_ms in (40, 100):
        events = _events(Vad(VadConfig(start_ms=start_ms)), pcm)
        assert events[0][1] == "start"
        starts[start_ms] = events[0][0]
        # never before the speech plus the required voiced run
        assert starts[start_ms] >= 500 + start_ms
    # the longer hysteresis starts later by about the difference
    assert 40 <= starts[100] - starts[40] <= 120


@needs_espeak
def test_stop_comes_stop_ms_after_the_speech() -> None:
    utt = _utterance()
    pcm = np.concatenate((_silence(300), utt, _silence(1500)))
    end_ms = 300 + len(utt) // 16
    for stop_ms in (200, 500):
        events = _events(Vad(VadConfig(stop_ms=stop_ms)), pcm)
        kinds = [k for _, k in events]
        assert kinds[0] == "start" and kinds[-1] == "stop"
        assert kinds.count("start") == kinds.count("stop")
        last_stop = events[-1][0]
        assert end_ms + stop_ms - 100 <= last_stop <= end_ms + stop_ms + 100


def test_silence_and_hiss_never_start() -> None:
    rng = np.random.default_rng(3)
    hiss = (rng.standard_normal(16 * 2000) * 32768 * 10 ** (-65 / 20)).astype(np.int16)
    vad = Vad()
    assert _events(vad, np.concatenate((_silence(1000), hiss))) == []
    assert not vad.speaking


def test_rejects_bad_frames_and_config() -> None:
    with pytest.raises(ValueError):
        Vad().process(np.zeros(100, np.int16))
    with pytest.raises(ValueError):
        VadConfig(aggressiveness=4)
    with pytest.raises(ValueError):
        VadConfig(start_ms=0)


def test_turn_end_fires_once_after_silence() -> None:
    turn = TurnDetector(end_silence_ms=300)
    states = [False] * 10 + [True] * 20 + [False, True] * 3 + [False] * 40
    fired = [i for i, s in enumerate(states) if turn.process(s)]
    last_speech = max(i for i, s in enumerate(states) if s)
    assert fired == [last_speech + 300 // FRAME_MS]


def test_turn_end_needs_speech_and_resets() -> None:
    turn = TurnDetector(end_silence_ms=100)
    assert not any(turn.process(False) for _ in range(50))
    seq = ([True] * 5 + [False] * 10) * 3
    assert sum(turn.process(s) for s in seq) == 3
    turn.process(True)
    turn.reset()
    assert not any(turn.process(False) for _ in range(20))


@needs_espeak
def test_vad_and_turn_one_end_per_utterance() -> None:
    utt = _utterance()
    pcm = np.concatenate((_silence(400), utt, _silence(1200), utt, _silence(1200)))
    vad, turn = Vad(), TurnDetector()
    ends = []
    for i, frame in enumerate(split_frames(pcm)):
        vad.process(frame)
        if turn.process(vad.speaking):
            ends.append(i * FRAME_MS)
    assert len(ends) == 2
    first_end = 400 + len(utt) // 16
    assert first_end < ends[0] < first_end + 1200
