"""Live equals replay: a call recorded live over the Twilio protocol (a real `websockets`
client against the served gateway, `record_dir`), replayed with `atoms-gateway replay
--agent-channel`, barges in at the same moments of the call's clock within one frame.

Times compared are call-clock times from the recording and the replay report, never
wall-clock durations."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from tests.e2e.harness import HOST, utterance
from tests.kit.clients import TwilioClient

CLI = [sys.executable, "-m", "gateway.cli"]
FRAME_MS = 20


async def _recorded(gw, tmp_path: Path, call_id: str) -> tuple[Path, dict]:
    """The call's WAV and timeline, once the gateway has written them."""
    for _ in range(200):
        wavs = sorted(tmp_path.glob(f"*{call_id}*.wav"))
        if wavs and wavs[0].with_suffix(".json").exists() and not any(
                c.call_id == call_id for c in gw.app.calls.values()):
            break
        await asyncio.sleep(0.05)
    assert wavs, f"no recording of {call_id} in {list(tmp_path.iterdir())}"
    wav = wavs[0]
    return wav, json.loads(wav.with_suffix(".json").read_text())


def _replay_report(wav: Path, tmp_path: Path) -> dict:
    report = tmp_path / "report.json"
    done = subprocess.run(CLI + ["replay", str(wav), "--agent-channel", "--report", str(report)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"replay failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return json.loads(report.read_text())


def _pauses(events: list[dict]) -> list[float]:
    """When the agent's audio stopped for each confirmed barge-in (`Call.interrupts`)."""
    out = []
    for e in events:
        if e["type"] == "interrupt":
            out.append(round(e["t_ms"] - e.get("paused_ms", 0.0), 1))
    return out


async def test_twilio_call_replayed_from_its_recording_barges_in_at_the_same_times(
        gateway_factory, tmp_path):
    gw = await gateway_factory(record_dir=str(tmp_path))
    client = TwilioClient(HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(0.4)  # the greeting is playing
    await client.say(utterance("tell me a story please", 8000))
    await client.wait_control("clear")  # the caller talked over it, and it stopped
    await asyncio.sleep(0.3)
    await client.hangup_and_wait()
    wav, timeline = await _recorded(gw, tmp_path, client.call_id)

    live = _pauses(timeline["events"])
    live_confirmed = [e["t_ms"] for e in timeline["events"] if e["type"] == "interrupt"]
    assert live, [e["type"] for e in timeline["events"]]
    assert timeline["media"]["caller"] and timeline["media"]["agent"]

    report = _replay_report(wav, tmp_path)
    replayed = [it["at_ms"] for it in report["interrupts"]]
    replayed_confirmed = [e["t_ms"] for e in report["events"] if e["type"] == "interrupt"]
    assert len(replayed) == len(live), (live, replayed)
    for a, b in zip(live, replayed, strict=True):
        assert abs(a - b) <= FRAME_MS, (live, replayed)
    for a, b in zip(live_confirmed, replayed_confirmed, strict=True):
        assert abs(a - b) <= FRAME_MS, (live_confirmed, replayed_confirmed)
    # the onset the report gives lies before the barge-in, inside the caller's speech
    for it in report["interrupts"]:
        assert 0 < it["latency_ms"] < 1000
