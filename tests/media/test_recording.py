"""CallRecorder: stereo WAV time alignment, timeline JSON, bad input."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.recording import CallRecorder


def frame(value: int) -> np.ndarray:
    return np.full(FRAME_SAMPLES, value, dtype=np.int16)


def read_wav(path: Path) -> tuple[wave._wave_params, np.ndarray]:
    with wave.open(str(path), "rb") as w:
        params = w.getparams()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return params, data.reshape(-1, params.nchannels)


def test_wav_is_stereo_16k_and_time_aligned(tmp_path: Path) -> None:
    rec = CallRecorder()
    speech = (np.arange(FRAME_SAMPLES) * 50 - 8000).astype(np.int16)
    rec.caller(speech, 0.0)
    rec.caller(frame(-300), 0.02)
    rec.agent(frame(1234), 1.0)
    path = tmp_path / "call.wav"
    rec.write_wav(path)
    params, data = read_wav(path)
    assert (params.nchannels, params.sampwidth, params.framerate) == (2, 2, SAMPLE_RATE)
    assert len(data) == SAMPLE_RATE + FRAME_SAMPLES
    left, right = data[:, 0], data[:, 1]
    # The agent's frame at t=1.0 starts at sample 16000 of the right channel.
    assert np.all(right[16000 : 16000 + FRAME_SAMPLES] == 1234)
    assert not np.any(right[:16000])
    # The left channel has the caller's frames where they were recorded, silence after.
    assert np.array_equal(left[:FRAME_SAMPLES], speech)
    assert np.all(left[FRAME_SAMPLES : 2 * FRAME_SAMPLES] == -300)
    assert not np.any(left[2 * FRAME_SAMPLES :])


def test_frames_are_copied_on_record(tmp_path: Path) -> None:
    rec = CallRecorder()
    buf = frame(5)
    rec.agent(buf, 0.5)
    buf[:] = 0  # the loop reuses its buffer
    stereo = rec.stereo()
    assert np.all(stereo[8000 : 8000 + FRAME_SAMPLES, 1] == 5)


def test_unaligned_times_round_to_nearest_sample() -> None:
    rec = CallRecorder()
    rec.caller(frame(9), 0.50003)  # 8000.48 samples
    stereo = rec.stereo()
    assert stereo[8000, 0] == 9 and stereo[7999, 0] == 0
    assert rec.duration == pytest.approx((8000 + FRAME_SAMPLES) / SAMPLE_RATE)


def test_empty_recording_writes_an_empty_wav(tmp_path: Path) -> None:
    rec = CallRecorder()
    rec.write_wav(tmp_path / "empty.wav")
    params, data = read_wav(tmp_path / "empty.wav")
    assert params.nchannels == 2 and len(data) == 0
    rec.write_timeline(tmp_path / "empty.json")
    assert json.loads((tmp_path / "empty.json").read_text()) == {"events": []}


def test_timeline_sorted_with_fields(tmp_path: Path) -> None:
    rec = CallRecorder()
    rec.event(1.25, "system.control.interrupt")
    rec.event(0.0, "system.user.joined")
    rec.event(0.5, "agent.transcript.update", role="assistant", content="Hello",
              latency=np.float32(0.25))
    events = rec.timeline()
    assert [e["type"] for e in events] == [
        "system.user.joined", "agent.transcript.update", "system.control.interrupt"]
    assert events[1] == {"t_ms": 500.0, "type": "agent.transcript.update", "role": "assistant",
                         "content": "Hello", "latency": np.float32(0.25)}
    path = tmp_path / "timeline.json"
    rec.write_timeline(path)
    loaded = json.loads(path.read_text())
    assert [e["t_ms"] for e in loaded["events"]] == [0.0, 500.0, 1250.0]
    assert loaded["events"][1]["content"] == "Hello"
    assert loaded["events"][1]["latency"] == "0.25"  # not JSON-native: written as str


def test_bad_input() -> None:
    rec = CallRecorder()
    with pytest.raises(TypeError, match="int16"):
        rec.caller(np.zeros(FRAME_SAMPLES, dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match="t must be"):
        rec.agent(frame(1), -0.02)
    with pytest.raises(ValueError, match="t must be"):
        rec.agent(frame(1), float("nan"))
    with pytest.raises(ValueError, match="type"):
        rec.event(0.0, "")
    with pytest.raises(ValueError, match="t_ms"):
        rec.event(0.0, "x", t_ms=3)
    assert rec.duration == 0 and rec.timeline() == []


def test_recording_stops_growing_at_its_maximum_duration():
    rec = CallRecorder(max_seconds=1.0, max_events=5)
    frame = np.ones(320, dtype=np.int16)
    for i in range(100):  # 2 s of frames on each side
        rec.caller(frame, i * 0.02)
        rec.agent(frame, i * 0.02)
    for i in range(10):
        rec.event(i * 0.05, "tick")
    assert rec.duration == 1.0
    assert len(rec.timeline()) == 5
    assert rec.dropped == 2 * 50 + 5
