"""Recordings streamed to disk while the call runs: the growing WAV (`media.wavstream`),
`StreamingRecorder`, and reading what a killed process left behind."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from media import wavstream
from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.recording import CallRecorder, read_timeline, timeline_path
from media.recording_stream import StreamingRecorder


def frame(value: int) -> np.ndarray:
    return np.full(FRAME_SAMPLES, value, dtype=np.int16)


def wave_read(path: Path) -> np.ndarray:
    """What Python's own `wave` module gives, as (n, 2) int16."""
    with wave.open(str(path)) as w:
        data = w.readframes(w.getnframes())
    data = data[: len(data) - len(data) % 4]
    return np.frombuffer(data, dtype="<i2").reshape(-1, 2)


def feed(rec: CallRecorder) -> None:
    """A call's worth of frames out of step between the sides, a burst, and events."""
    for i in range(60):
        rec.caller(frame(i + 1), i * 0.02, i * 0.02 + 0.02)
        if i % 2:
            rec.event(i * 0.02, "tick", n=i)
    rec.agent(frame(-7), 0.5)
    rec.agent(frame(-8), 0.5)  # overlaps the one before: goes right after it
    for _ in range(5):  # a burst arriving at once
        rec.caller(frame(99), 1.0, 1.02)
    rec.event(0.01, "early", why=Path("x"))  # (not JSON: str())


def test_unpatched_header_reads_with_wave_and_read_pcm(tmp_path: Path) -> None:
    path = tmp_path / "growing.wav"
    f = wavstream.create(path, SAMPLE_RATE, 2)
    wavstream.write_frames(f, 2, [[(0, frame(3))], [(FRAME_SAMPLES, frame(4))]])
    f.write(b"\x01\x02\x03")  # half a stereo sample: the write the process died in
    f.close()
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, SAMPLE_RATE, 2)
    data = wave_read(path)
    assert len(data) == 2 * FRAME_SAMPLES + 0  # the half sample is not a frame
    pcm, rate, channels = wavstream.read_pcm(path)
    assert (rate, channels) == (SAMPLE_RATE, 2)
    stereo = pcm.reshape(-1, 2)
    assert np.all(stereo[:FRAME_SAMPLES, 0] == 3) and np.all(stereo[FRAME_SAMPLES:, 1] == 4)
    assert not np.any(stereo[FRAME_SAMPLES:, 0]) and not np.any(stereo[:FRAME_SAMPLES, 1])

    assert wavstream.main([str(path)]) == 0  # the repair: real sizes from the length
    with wave.open(str(path)) as w:
        assert w.getnframes() == 2 * FRAME_SAMPLES


def test_unpatched_header_reads_with_libsndfile(tmp_path: Path) -> None:
    """libsndfile (soundfile, and every tool built on it) sizes the data from the file."""
    import soundfile

    path = tmp_path / "growing.wav"
    f = wavstream.create(path, SAMPLE_RATE, 2)
    wavstream.write_frames(f, 2, [[(0, frame(3))], [(FRAME_SAMPLES, frame(4))]])
    f.write(b"\x01\x02\x03")
    f.close()
    data, rate = soundfile.read(path, dtype="int16")
    assert rate == SAMPLE_RATE and data.shape == (2 * FRAME_SAMPLES, 2)
    assert np.all(data[:FRAME_SAMPLES, 0] == 3) and np.all(data[FRAME_SAMPLES:, 1] == 4)


def test_frames_of_one_side_land_after_the_other_side_was_written(tmp_path: Path) -> None:
    path = tmp_path / "late.wav"
    f = wavstream.create(path, SAMPLE_RATE, 2)
    wavstream.write_frames(f, 2, [[], [(0, frame(5)), (FRAME_SAMPLES, frame(6))]])
    wavstream.write_frames(f, 2, [[(FRAME_SAMPLES // 2, frame(9))], []])  # late, between
    wavstream.patch_sizes(f)
    f.close()
    data = wave_read(path)
    assert len(data) == 2 * FRAME_SAMPLES
    assert np.all(data[:FRAME_SAMPLES, 1] == 5) and np.all(data[FRAME_SAMPLES:, 1] == 6)
    half = FRAME_SAMPLES // 2
    assert not np.any(data[:half, 0]) and np.all(data[half : half + FRAME_SAMPLES, 0] == 9)


async def test_streamed_recording_equals_the_in_memory_one(tmp_path: Path) -> None:
    memory = CallRecorder()
    feed(memory)
    memory.write_wav(tmp_path / "memory.wav")
    memory.write_timeline(tmp_path / "memory.json")

    rec = StreamingRecorder(tmp_path / "rec", "call-1", flush_s=0.01)
    await rec.open()
    feed(rec)
    await asyncio.sleep(0.1)  # (written while the call runs)
    assert read_timeline(rec.jsonl_path)["media"]["caller"]
    await rec.close()
    assert (tmp_path / "rec" / "call-1.wav").read_bytes() == (
        tmp_path / "memory.wav").read_bytes()
    assert json.loads(rec.json_path.read_text()) == json.loads(
        (tmp_path / "memory.json").read_text())
    assert not rec.jsonl_path.exists()
    assert sorted(p.name for p in (tmp_path / "rec").iterdir()) == ["call-1.json", "call-1.wav"]


async def test_a_killed_recording_reads_up_to_its_last_write(tmp_path: Path) -> None:
    rec = StreamingRecorder(tmp_path, "crash", flush_s=0.01)
    await rec.open()
    for i in range(50):
        rec.caller(frame(1000 + i), i * 0.02, i * 0.02 + 0.02)
    rec.event(0.3, "bargein.pause")
    for _ in range(100):
        await asyncio.sleep(0.02)
        if read_timeline(rec.jsonl_path).get("media"):
            break
    # the process dies here: copy the files as they are, before close() finishes them
    crashed = tmp_path / "crashed"
    crashed.mkdir()
    shutil.copy(rec.wav_path, crashed / "c.wav")
    with open(rec.jsonl_path, encoding="utf-8") as f:
        (crashed / "c.jsonl").write_text(f.read() + '{"t_ms": 12, "type": "half wr')
    await rec.close()

    assert timeline_path(crashed / "c.wav") == crashed / "c.jsonl"
    doc = read_timeline(crashed / "c.jsonl")
    assert [e["type"] for e in doc["events"]] == ["bargein.pause"]
    assert len(doc["media"]["caller"]) == 50
    data = wave_read(crashed / "c.wav")
    assert len(data) == 50 * FRAME_SAMPLES
    assert np.all(data[49 * FRAME_SAMPLES :, 0] == 1049)


async def test_writes_happen_off_the_event_loop(tmp_path: Path, monkeypatch) -> None:
    threads: list[int] = []
    real = StreamingRecorder._write

    def spy(self, batch):
        threads.append(threading.get_ident())
        real(self, batch)

    monkeypatch.setattr(StreamingRecorder, "_write", spy)
    rec = StreamingRecorder(tmp_path, "off-loop", flush_s=0.01)
    await rec.open()
    rec.caller(frame(1), 0.0)
    await rec.close()
    assert threads and threading.get_ident() not in threads


async def test_a_lagging_disk_drops_audio_instead_of_growing(tmp_path: Path) -> None:
    rec = StreamingRecorder(tmp_path, "slow", flush_s=60, max_pending_s=0.1)  # 5 frames
    await rec.open()
    for i in range(8):
        rec.caller(frame(1), i * 0.02)
    assert rec.dropped == 3
    await rec.close()
    assert len(wave_read(rec.wav_path)) == 5 * FRAME_SAMPLES


@pytest.mark.parametrize("name", ["../x", "a/b", ".", "..", "", "a.b", "x\x00y", "é"])
def test_names_cannot_leave_the_folder(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="unsafe recording name"):
        StreamingRecorder(tmp_path, name)
