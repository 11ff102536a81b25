"""Live equals replay over SIP: baresip (a real softphone) calls the served gateway, which
records the call (`record_dir`); its microphone talks over the agent's greeting for more
than a second, so the barge-in pauses the agent and is confirmed as an interruption.
Replaying the recording with `atoms-gateway replay --agent-channel` gives the same pause
("bargein.pause") and interrupt ("interrupt") times within 20 ms.

Times compared are call-clock times from the recording and the replay report, never
wall-clock durations."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gateway.app import recording_name
from tests.kit.speech import speech, trim_silence
from tests.sip_interop.helpers import (
    BaresipControl,
    require,
    start_gateway,
    stop_baresip,
    wait_for,
    write_baresip_config,
    write_wav,
)

pytestmark = pytest.mark.timeout(180)

SPEECH_AT_S = 3.0  # into the call: the greeting (about 11 s) is playing, barge-in armed
TOLERANCE_MS = 20.0
CLI = [sys.executable, "-m", "gateway.cli"]


def _times(events: list[dict[str, Any]], kind: str) -> list[float]:
    return [float(e["t_ms"]) for e in events if e["type"] == kind]


async def _replay_report(wav: Path, report: Path) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        *CLI, "replay", str(wav), "--agent-channel", "--report", str(report),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, out.decode(errors="replace")[-3000:]
    return json.loads(report.read_text())


async def test_baresip_call_replayed_from_its_recording_pauses_and_interrupts_at_the_same_times(
        tmp_path: Path) -> None:
    baresip = require("baresip")
    rec_dir = tmp_path / "rec"
    app = await start_gateway(record_dir=str(rec_dir))
    proc = ctrl = None
    words = trim_silence(speech("tell me a story please about the sea and the mountains",
                                voice="en-us"))
    assert len(words) > 1.5 * 16000  # long enough to be confirmed as an interruption
    try:
        mic = np.concatenate([np.zeros(int(16000 * SPEECH_AT_S), np.int16), words,
                              np.zeros(16000 * 6, np.int16)])
        write_wav(tmp_path / "mic.wav", mic)
        cfg = tmp_path / "baresip"
        ctrl_port = write_baresip_config(cfg, tmp_path / "mic.wav")
        proc = await asyncio.create_subprocess_exec(
            baresip, "-f", str(cfg), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        ctrl = await BaresipControl.connect(ctrl_port, proc)
        await ctrl.command("dial", f"sip:agent@127.0.0.1:{app.sip_port}")
        await wait_for(lambda: ctrl.saw("CALL_ESTABLISHED"), 15, "baresip: call established")
        await wait_for(lambda: len(app.opened) == 1, 5, "the gateway's call")
        call = app.opened[0]
        await wait_for(lambda: bool(call.interrupts), 20, "the caller's barge-in")
        await asyncio.sleep(1.0)
        await ctrl.command("hangup")
        await wait_for(lambda: call.closed and not app.calls, 10, "the call to end")
    finally:
        await stop_baresip(ctrl, proc)
        await app.stop(drain_timeout=0)

    wav = rec_dir / f"{recording_name(call.call_id, call.gateway_id)}.wav"
    await wait_for(lambda: wav.with_suffix(".json").exists(), 10, "the recording")
    timeline = json.loads(wav.with_suffix(".json").read_text())
    live_pauses = _times(timeline["events"], "bargein.pause")
    live_interrupts = _times(timeline["events"], "interrupt")
    assert live_interrupts, [e["type"] for e in timeline["events"]]
    assert timeline["media"]["caller"] and timeline["media"]["agent"]
    # the speech held: confirmed by its length, after the pause that stopped the agent
    confirmed = [e for e in timeline["events"] if e["type"] == "bargein.confirm"]
    assert confirmed and confirmed[0]["reason"] == "speech", confirmed

    report = await _replay_report(wav, tmp_path / "report.json")
    replay_pauses = _times(report["events"], "bargein.pause")
    replay_interrupts = _times(report["events"], "interrupt")
    assert len(replay_pauses) == len(live_pauses), (live_pauses, replay_pauses)
    for a, b in zip(live_pauses, replay_pauses, strict=True):
        assert abs(a - b) <= TOLERANCE_MS, (live_pauses, replay_pauses)
    assert len(replay_interrupts) == len(live_interrupts), (live_interrupts, replay_interrupts)
    for a, b in zip(live_interrupts, replay_interrupts, strict=True):
        assert abs(a - b) <= TOLERANCE_MS, (live_interrupts, replay_interrupts)
    # the report's interrupts are the pauses that were confirmed, each after its onset
    assert [it["at_ms"] for it in report["interrupts"]] == [
        round(t - e.get("paused_ms", 0.0), 1)
        for t, e in zip(replay_interrupts, [e for e in report["events"]
                                           if e["type"] == "interrupt"], strict=True)]
    for it in report["interrupts"]:
        assert 0 < it["latency_ms"] < 1000
