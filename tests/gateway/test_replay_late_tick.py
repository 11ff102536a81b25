"""Live equals replay when the live event loop stalls mid-reply: the media tick then runs
the ticks it missed back to back (`TickPacer`), so the agent's frames go out in a burst
after a gap. A Twilio caller on an echo line (`LineClient`, 10 dB of echo at 40 ms, no
sound of its own) calls the served gateway while the loop is held up for 90 ms every
second of the reply. Live, the agent's echo never pauses the reply; the call's recording,
replayed with `--agent-channel`, must not pause it either. (Replay once took the gap for
the end of a talkspurt and held the rest of the reply behind it: the echo in the recorded
caller channel then had no reference, and replay paused and interrupted where the live
call did not.)

Times compared are call-clock times (the recording's and the replay's), never wall-clock
durations."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from gateway.app import AtomsApp
from tests.kit.bargein_call_flows import (
    calibrate,
    make_flow,
    run_call_flow,
)
from tests.kit.live_flows import live_flow, served

pytestmark = pytest.mark.timeout(120)

STALL_S = 0.09  # the event loop held up this long (4-5 ticks caught up at once)
EVERY_S = 1.0  # once per second of agent audio


async def _stall_while_the_agent_talks(app: AtomsApp) -> None:
    """Block the event loop (as a slow synthesis or a collection would) every `EVERY_S`
    while a call's agent audio is playing."""
    since: float | None = None
    while True:
        await asyncio.sleep(0.02)
        if not any(c.agent_active for c in app.calls.values()):
            since = None
            continue
        now = time.monotonic()
        if since is None:
            since = now
        elif now - since >= EVERY_S:
            time.sleep(STALL_S)  # (deliberately blocking: the stall under test)
            since = time.monotonic()


def _bursts(agent_ms: list[float]) -> int:
    """Agent frames sent within 2 ms of the one before: ticks run back to back."""
    return sum(1 for a, b in zip(agent_ms, agent_ms[1:], strict=False) if b - a < 2.0)


async def test_a_call_whose_loop_stalled_mid_reply_replays_from_its_recording_the_same(
        tmp_path: Path) -> None:
    cal = await asyncio.to_thread(calibrate)
    flow = make_flow("dev", "echo", "echo40", offset_s=1.0, seed=5)
    replayed = await asyncio.to_thread(run_call_flow, flow, cal, True)
    assert replayed.ok, replayed.problem

    async with served(str(tmp_path)) as (app, router, port):
        staller = asyncio.create_task(_stall_while_the_agent_talks(app))
        try:
            live, again, wav = await live_flow(port, router, tmp_path, replayed)
        finally:
            staller.cancel()
            await asyncio.gather(staller, return_exceptions=True)

    media = json.loads(wav.with_suffix(".json").read_text())["media"]
    reply = [t for t in media["agent"] if t >= live.reply_start_ms]
    assert _bursts(reply) >= 2, "the loop never stalled during the reply"
    assert live.ok, live.problem
    assert not live.pauses and not live.interrupts, (live.pauses, live.interrupts)
    # the recording replays to the same (no) pauses and interrupts
    assert not again.pauses and not again.interrupts, (again.pauses, again.interrupts)
