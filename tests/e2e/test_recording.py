"""Per-call recording: `record_dir` writes a time-aligned stereo WAV and a JSON timeline."""

import asyncio
import json
import threading
import wave

import numpy as np

from media.recording import frame_positions
from media.recording_stream import StreamingRecorder
from tests.e2e.harness import HOST, listed
from tests.kit.clients import WebClient
from tests.kit.speech import speech, trim_silence


async def test_record_dir_writes_stereo_wav_and_timeline(gateway_factory, tmp_path, monkeypatch):
    writers = []  # threads that wrote the recording: not the loop's (it serves every call)
    real_write = StreamingRecorder._write

    def write(self, batch):
        writers.append(threading.get_ident())
        real_write(self, batch)

    monkeypatch.setattr(StreamingRecorder, "_write", write)
    gw = await gateway_factory(record_dir=str(tmp_path))
    client = WebClient(HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(1.0)  # the greeting is playing
    # (a turn, not a backchannel: longer than the 640 ms of speech that confirms one)
    await client.say(trim_silence(speech("wait, what time is it there now")))
    await client.wait_control("clear")  # the caller talked over the greeting
    await client.hangup_and_wait()
    call_id = client.call_id
    wav_path, timeline_path = tmp_path / f"{call_id}.wav", tmp_path / f"{call_id}.json"
    # the gateway forgets a call only after writing its recording
    for _ in range(200):  # (written in a thread: no session event marks the end)
        if not listed(gw, call_id):
            break
        await asyncio.sleep(0.05)
    assert not listed(gw, call_id)
    assert writers and threading.get_ident() not in writers
    with wave.open(str(wav_path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth()) == (2, 16000, 2)
        stereo = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    caller, agent = stereo[:, 0].astype(np.float64), stereo[:, 1].astype(np.float64)
    assert np.sqrt(np.mean(agent**2)) > 300  # the agent's voice on the right
    assert np.sqrt(np.mean(caller**2)) > 50  # the caller's voice on the left
    doc = json.loads(timeline_path.read_text())
    events = doc["events"]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "system.init" and "interrupt" in kinds and "agent.speak" in kinds
    # time-aligned: the agent's right channel goes quiet right after the last frame sent
    # before the barge-in paused it (the interrupt itself comes once the caller's speech
    # is confirmed as a turn). Frames a late tick sent together play one after another,
    # so that end may lie a few frames past the pause: it is where the recording put it.
    assert "interrupt" in kinds
    t_pause = next(e["t_ms"] for e in events if e["type"] == "bargein.pause")
    sent = [t for t in doc["media"]["agent"] if t <= t_pause]
    end = frame_positions(doc["media"]["agent"], 320)[len(sent) - 1] + 320  # (samples)
    after = agent[end + 960 : end + 6400]  # 60-400 ms after it
    before = agent[end - 8000 : end]
    assert np.sqrt(np.mean(after**2)) < 0.1 * np.sqrt(np.mean(before**2))
