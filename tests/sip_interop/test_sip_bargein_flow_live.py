"""A conversation flow's barge-in live over SIP/RTP: a SIP phone (`SipLineClient`, an echo
line) calls the served gateway, says its turn, and talks over the agent's first reply
0.5 s in. The agent pauses at the caller's voice and the barge-in is confirmed; the call's
recording, replayed with `--agent-channel`, pauses and interrupts at the same times
within 20 ms.

Times compared are call-clock times (the recording's and the replay's), never wall-clock
durations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.kit.bargein_call_flows import (
    calibrate,
    make_flow,
    run_call_flow,
)
from tests.kit.live_flows import live_flow, served
from tests.sip_interop.helpers import free_port

pytestmark = pytest.mark.timeout(120)

TOLERANCE_MS = 20.0


def _same(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= TOLERANCE_MS for x, y in zip(a, b,
                                                                              strict=True))


async def test_a_barge_in_over_sip_pauses_confirms_and_replays_from_its_recording_the_same(
        tmp_path: Path) -> None:
    cal = await asyncio.to_thread(calibrate)
    flow = make_flow("dev", "speech", "echo40", voice="en+m3", level_db=6.0, offset_s=0.5,
                     seed=7)
    replayed = await asyncio.to_thread(run_call_flow, flow, cal, True)
    assert replayed.ok, replayed.problem

    rtp_base = free_port(even=True)
    async with served(str(tmp_path), "sip", sip_port=free_port(tcp_too=True),
                      rtp_port_min=rtp_base, rtp_port_max=min(rtp_base + 100, 65534)
                      ) as (_, router, port):
        live, again, wav = await live_flow(port, router, tmp_path, replayed, via="sip")

    assert wav.exists()
    assert live.ok, live.problem
    assert live.onset_ms is not None
    # paused at the caller's voice (after its onset, within the reply) and confirmed
    assert live.sound_pauses, (live.onset_ms, live.pauses)
    assert live.caught, (live.onset_ms, live.pauses, live.resumes, live.interrupts)
    assert live.confirms and live.interrupts[0] >= live.sound_pauses[0]
    # the recording replays to the same pauses and interrupts
    assert _same(live.pauses, again.pauses), (live.pauses, again.pauses)
    assert _same(live.interrupts, again.interrupts), (live.interrupts, again.interrupts)
