"""A transport whose line's echo comes back late (SIP: the phone's jitter buffer on top of
the line) sets how far its calls' barge-in canceller looks (`echo_tail_ms`); other calls
keep the default; a recording says so, and its replay runs with the same reach."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gateway.app import AtomsApp
from gateway.call import CallSettings
from gateway.media_tick import MediaTick
from gateway.testing import recorded_settings
from gateway.transports.rtp import ECHO_TAIL_MS, RtpTransport
from media.bargein import BargeInConfig, BargeInDetector
from media.frames import FRAME_SAMPLES, split_frames
from media.recording import read_timeline
from runtime.clock import VirtualClock
from tests.gateway.lines import TickedLine
from tests.kit.bargein_eval import play_tick
from tests.kit.speech import needs_espeak, speech


class LateEchoLine(TickedLine):
    echo_tail_ms = ECHO_TAIL_MS


async def test_the_transport_sets_its_calls_echo_tail() -> None:
    assert RtpTransport.echo_tail_ms == ECHO_TAIL_MS >= 300
    app = AtomsApp()
    app.load_engines()
    clock = VirtualClock()
    tick = MediaTick(clock)
    sip = await app.open_call(LateEchoLine(tick), call_id="sip", clock=clock)
    other = await app.open_call(TickedLine(tick), call_id="other", clock=clock)
    given = await app.open_call(LateEchoLine(tick), call_id="given", clock=clock,
                                call_settings=CallSettings())
    try:
        assert sip.settings.bargein.echo_tail_ms == ECHO_TAIL_MS
        assert other.settings.bargein.echo_tail_ms == BargeInConfig().echo_tail_ms == 200
        assert given.settings.bargein.echo_tail_ms == 200  # (settings given are kept)
    finally:
        for call in (sip, other, given):
            await app.end_call(call, "done")
        await tick.stop()


async def test_a_recording_keeps_the_echo_tail_for_its_replay(tmp_path: Path) -> None:
    app = AtomsApp(record_dir=str(tmp_path))
    app.load_engines()
    tick = MediaTick()
    sip = await app.open_call(LateEchoLine(tick), call_id="sip")
    other = await app.open_call(TickedLine(tick), call_id="other")
    for call in (sip, other):
        await app.end_call(call, "done")
    await tick.stop()
    docs = {p.name.split("-")[0]: read_timeline(p) for p in tmp_path.glob("*.json")}
    assert set(docs) == {"sip", "other"}
    assert recorded_settings(docs["other"]) is None
    settings = recorded_settings(docs["sip"])
    assert settings is not None and settings.bargein.echo_tail_ms == ECHO_TAIL_MS


@needs_espeak
def test_the_longer_reach_cancels_a_sip_lines_late_echo() -> None:
    """The agent's echo alone, 300 ms late and 10 dB down (a 200 ms line, the phone's
    jitter buffer and its grid): within the default 200 ms reach the detector takes it
    for the caller; with the SIP reach the canceller finds it (delay 4800 samples) and
    nothing fires."""
    agent = speech("The order you placed on Monday is on its way and should reach you by "
                   "Thursday afternoon, unless the weather holds it up again.")
    agent = np.concatenate([agent, agent])[: 6 * 16000 // FRAME_SAMPLES * FRAME_SAMPLES]
    d = 300 * 16
    echo = np.zeros(len(agent), np.float32)
    echo[d:] = agent[:-d] * 10 ** (-10 / 20)
    noise = np.random.default_rng(1).normal(0, 10, len(agent))
    mic = (echo + noise).clip(-32768, 32767).astype(np.int16)
    fired = {}
    for tail in (200, ECHO_TAIL_MS):
        det = BargeInDetector(BargeInConfig(echo_tail_ms=tail))
        fired[tail] = [i for i, (r, m) in enumerate(zip(split_frames(agent), split_frames(mic),
                                                        strict=True))
                       if play_tick(det, i, r, m)]
        if tail == ECHO_TAIL_MS:
            assert det.echo_canceller.delay is not None
            assert abs(det.echo_canceller.delay - d) <= 16
    assert fired[200] and not fired[ECHO_TAIL_MS]
