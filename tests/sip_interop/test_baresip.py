"""baresip (a real softphone) calls the gateway: its microphone is a WAV of espeak
speech (aufile), what it hears is recorded by its sndfile module.

Checks: the call connects; baresip's recording holds the demo agent's greeting (level,
duration, words pocketsphinx finds); talking over the greeting cuts the agent's audio
(measured on the gateway's time-aligned call recording); a key pressed in baresip
(RFC 4733) reaches the session as `system.dtmf`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from tests.kit.speech import speech
from tests.sip_interop.helpers import (
    BaresipControl,
    active_seconds,
    read_wav,
    require,
    rms_dbfs,
    spot_words,
    start_gateway,
    stop_baresip,
    wait_for,
    write_baresip_config,
    write_wav,
)

pytestmark = pytest.mark.timeout(120)

SPEECH_AT_S = 4.0  # the caller starts talking this far into the call (the greeting is ~11 s)
GREETING_WORDS = ["hello", "thanks", "calling", "demo", "line", "ask", "time", "story",
                  "operator", "person", "goodbye", "end", "call"]
DISTRACTORS = ["seven", "purple", "banana", "window", "river", "monkey", "yellow", "kitchen"]


def _frames_db(pcm: np.ndarray, rate: int) -> np.ndarray:
    n = rate // 50
    fr = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    return 20 * np.log10(np.maximum(np.sqrt(np.mean(fr**2, axis=1)) / 32768.0, 1e-9))


async def test_baresip_call_greeting_bargein_dtmf(tmp_path: Path) -> None:
    baresip = require("baresip")
    rec_dir = tmp_path / "rec"
    app = await start_gateway(record_dir=str(rec_dir))
    proc = None
    ctrl = None
    try:
        # (a turn, not a backchannel: longer than the speech that confirms a barge-in)
        caller_words = speech("hello, wait a moment, I have a question")
        mic = np.concatenate([np.zeros(int(16000 * SPEECH_AT_S), np.int16), caller_words,
                              np.zeros(16000 * 5, np.int16)])
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

        await asyncio.sleep(1.0)
        await ctrl.command("sndcode", "5")
        await wait_for(lambda: any(e["type"] == "system.dtmf" for e in call.timeline), 10,
                       "the key press to reach the session")
        await wait_for(lambda: bool(call.interrupts), 20, "the caller to barge in")
        await asyncio.sleep(4.0)  # the agent answers; baresip records it
        await ctrl.command("hangup")
        await wait_for(lambda: call.closed and not app.calls, 10, "the call to end")
    finally:
        await stop_baresip(ctrl, proc)
        await app.stop(drain_timeout=0)

    digits = [e["digit"] for e in call.timeline if e["type"] == "system.dtmf"]
    assert digits == ["5"]

    # what baresip heard: the greeting (and the reply), loud and long enough, in words
    dumps = sorted(cfg.glob("dump-*-dec.wav"))
    assert dumps, f"baresip wrote no recording; its log:\n{(await proc.stdout.read()).decode()}"
    heard, rate, _ = read_wav(dumps[-1])
    assert rms_dbfs(heard) > -35.0
    assert active_seconds(heard, rate) > 2.5
    heard16 = np.repeat(heard, 16000 // rate) if rate < 16000 else heard
    words = spot_words(heard16, GREETING_WORDS, DISTRACTORS)
    ours = [w for w in words if w in GREETING_WORDS]
    assert ours and len(ours) > len(words) - len(ours), words

    # barge-in, on the gateway's recording (caller left, agent right, one timeline)
    # (named after the call's id plus the gateway's own id for it: one call, one file)
    recorded = sorted(rec_dir.glob(f"{call.call_id}-*.wav"))
    assert len(recorded) == 1, recorded
    stereo, rate, channels = read_wav(recorded[0])
    assert channels == 2
    caller_db = _frames_db(stereo[0::2], rate)
    agent_db = _frames_db(stereo[1::2], rate)
    onset = int(np.argmax(caller_db > -40.0))
    assert caller_db[onset] > -40.0, "the caller's speech never reached the gateway"
    assert np.count_nonzero(agent_db[:onset] > -40.0) * 0.02 > 1.5  # the greeting played
    quiet = np.flatnonzero(agent_db[onset:] < -60.0)
    assert len(quiet), "the agent never stopped"
    cut_ms = quiet[0] * 20
    assert cut_ms < 800, f"agent audio went on {cut_ms} ms after the caller's speech onset"
