"""`atoms-gateway replay` as a user runs it, on generated recordings."""

import json
import subprocess
import sys
import wave
from pathlib import Path

import numpy as np

from media.frames import SAMPLE_RATE
from tests.kit.speech import speech, trim_silence

CLI = [sys.executable, "-m", "gateway.cli"]


def write_wav(path: Path, *channels: np.ndarray) -> None:
    n = max(len(c) for c in channels)
    data = np.zeros((n, len(channels)), dtype=np.int16)
    for i, c in enumerate(channels):
        data[: len(c), i] = c
    with wave.open(str(path), "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(data.tobytes())


def place(total_s: float, at_s: float, pcm: np.ndarray) -> np.ndarray:
    out = np.zeros(int(total_s * SAMPLE_RATE), dtype=np.float64)
    s = int(at_s * SAMPLE_RATE)
    n = min(len(pcm), len(out) - s)
    out[s : s + n] = pcm[:n]
    return out


def test_replay_stereo_recording_reports_the_interrupt(tmp_path):
    agent = place(8, 0.5, trim_silence(speech(
        "Thanks for calling. Our opening hours are nine to five on weekdays, and ten to "
        "two on Saturdays. We are closed on Sundays and public holidays.", voice="en+f3")))
    caller_voice = place(8, 3.0, trim_silence(speech("wait, I have a question", voice="en-us")))
    echo = np.zeros_like(agent)
    d = int(0.04 * SAMPLE_RATE)
    echo[d:] = agent[:-d] * 10 ** (-10 / 20)
    left = np.clip(caller_voice + echo, -32768, 32767).astype(np.int16)
    wav = tmp_path / "call.wav"
    write_wav(wav, left, agent.astype(np.int16))
    report, plot = tmp_path / "report.json", tmp_path / "plot.png"
    out = subprocess.run(CLI + ["replay", str(wav), "--agent-channel", "--report", str(report),
                                "--plot", str(plot)], capture_output=True, text=True,
                         timeout=120, check=True)
    data = json.loads(report.read_text())
    assert len(data["interrupts"]) == 1
    it = data["interrupts"][0]
    # the report's onset comes from the recording alone; the truth here is 3000 ms
    assert abs(it["speech_onset_ms"] - 3000) <= 100
    assert it["latency_ms"] == it["at_ms"] - it["speech_onset_ms"]
    assert 0 < it["at_ms"] - 3000 <= 250
    assert data["duration_ms"] >= 8000
    assert any(e["type"] == "interrupt" for e in data["events"])
    assert "INTERRUPT" in out.stdout and "latency" in out.stdout
    assert plot.stat().st_size > 10_000


def test_replay_noise_only_reports_no_interrupt(tmp_path):
    rng = np.random.default_rng(3)
    noise = rng.normal(0, 3000 * 10 ** (-15 / 20), 10 * SAMPLE_RATE).astype(np.int16)
    wav = tmp_path / "noise.wav"
    write_wav(wav, noise)
    report = tmp_path / "report.json"
    subprocess.run(CLI + ["replay", str(wav), "--report", str(report)],
                   capture_output=True, text=True, timeout=120, check=True)
    data = json.loads(report.read_text())
    assert data["interrupts"] == []
    # the demo agent greeted over the noise the whole time
    assert any(e["type"] == "agent.speak" for e in data["events"])
