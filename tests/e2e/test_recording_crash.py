"""Crash-safe recordings (issue 24, item 4): `serve --record-dir` streams a call's WAV and
timeline to disk while the call runs, so a gateway killed with SIGKILL mid-call leaves a
WAV that reads up to about its last second, and `atoms-gateway replay` reads it (and the
timeline's JSON lines) as it is. The caller's hostile id stays inside the folder."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import wave
from pathlib import Path

import numpy as np

from media.recording import read_timeline
from tests.kit.clients import TwilioClient
from tests.kit.serve_process import CLI, HOST, start_serve

FRAME_S = 0.02


def tone(seconds: float, rate: int = 8000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)


def wav_seconds(path: Path) -> float:
    """Seconds of audio in a WAV being written (its header's sizes are placeholders)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0.0
    return max(0, size - 44) / (16000 * 4)


async def test_sigkill_mid_call_leaves_a_readable_recording(tmp_path: Path) -> None:
    folder = tmp_path / "rec"
    served = await start_serve(tmp_path / "serve.log", "--record-dir", str(folder))
    client = None
    try:
        client = TwilioClient(HOST, served.port, call_id="CA../../../escape")
        await client.connect()
        await client.start()
        client.start_mic()
        await client.wait_audio(0.5)  # the greeting is playing
        await client.say(tone(4.0))  # the caller's channel: a steady tone, to its end
        sent_s = client._sent_frames * FRAME_S
        # the WAV grows while the call runs: within about a second of what was sent
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        wavs: list[Path] = []
        while loop.time() < deadline:
            wavs = list(folder.glob("*.wav"))
            if wavs and wav_seconds(wavs[0]) >= sent_s - 1.5:
                break
            await asyncio.sleep(0.1)
        assert wavs and wav_seconds(wavs[0]) >= sent_s - 1.5, (
            wavs, sent_s, served.text()[-2000:])
        assert await served.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        if client is not None:
            await client.close()
        await served.stop(signal.SIGKILL)

    # what the killed process left: the WAV and the timeline's JSON lines, in the folder
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2, names
    wav = folder / names[1]
    assert re.fullmatch(r"CA_escape-call-[0-9a-f]{12}\.jsonl", names[0]), names
    assert wav.suffix == ".wav" and wav.stem == Path(names[0]).stem
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rec", "serve.log"]

    with wave.open(str(wav)) as w:  # Python's own reader, header never patched
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16000, 2)
        data = w.readframes(w.getnframes())
    stereo = np.frombuffer(data[: len(data) - len(data) % 4], dtype="<i2").reshape(-1, 2)
    seconds = len(stereo) / 16000
    assert seconds >= sent_s - 1.5, (seconds, sent_s)
    # the caller's tone is there up to the recording's last moments, the agent's voice too
    left = stereo[:, 0].astype(np.float64)
    tail = left[int((seconds - 0.5) * 16000) :]
    assert np.sqrt(np.mean(tail**2)) > 1000, "the caller's last half second is missing"
    assert np.sqrt(np.mean(stereo[:, 1].astype(np.float64) ** 2)) > 100

    doc = read_timeline(wav.with_suffix(".jsonl"))
    assert doc["events"][0]["type"] == "system.init"
    assert len(doc["media"]["caller"]) >= (seconds - 1.0) / FRAME_S

    report = tmp_path / "report.json"
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "replay", str(wav), "--agent-channel", "--report", str(report),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    replayed = json.loads(report.read_text())
    assert abs(replayed["duration_ms"] / 1000 - seconds) < 1.5, (replayed["duration_ms"], seconds)
