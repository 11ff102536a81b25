"""The voice loop on a line whose far end confirms playback (marks) but never answers: two
utterances back to back and `agent.end_call` still hang up, one confirmation timeout after
the audio went out (issue 23, defect 6); a paused playout is never timed out as played."""

from __future__ import annotations

import asyncio

import numpy as np

from agent.events import (
    SDKAgentAudioEvent,
    SDKAgentEndCallEvent,
    SDKAgentLogEvent,
)
from gateway.call import Call, CallSettings
from gateway.speaking import CONFIRM_TIMEOUT_S
from media.frames import FRAME_S, SAMPLE_RATE
from runtime.clock import VirtualClock
from tests.kit.fakes import FakeSession, NoStt


class _MarksLostLine:
    """Sends nothing anywhere and confirms nothing: every mark is lost. (It paces playout:
    the test calls `play_tick` itself.)"""

    paces_playout = True

    def __init__(self) -> None:
        self.frames = 0
        self.hung_up = False

    async def send_audio(self, frame: np.ndarray) -> None:
        self.frames += 1

    async def clear_audio(self) -> None:
        return None

    async def hangup(self) -> None:
        self.hung_up = True

    async def transfer(self, target: str) -> None:
        return None

    async def send_event(self, event: object) -> None:
        return None


def _audio(seconds: float) -> SDKAgentAudioEvent:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pcm = (3000 * np.sin(2 * np.pi * 300 * t)).astype("<i2")
    return SDKAgentAudioEvent(pcm=pcm.tobytes(), sample_rate=SAMPLE_RATE)


async def _start() -> tuple[Call, _MarksLostLine, FakeSession, VirtualClock]:
    line, session, clock = _MarksLostLine(), FakeSession(), VirtualClock()
    call = Call(line, session, NoStt(), None, clock=clock,
                settings=CallSettings(far_end_confirms=True))
    await call.start()
    return call, line, session, clock


async def _tick(call: Call, clock: VirtualClock, seconds: float) -> None:
    """Play ticks for `seconds` of the call's clock (or until it closes)."""
    for _ in range(round(seconds / FRAME_S)):
        if call.closed:
            return
        await asyncio.sleep(0)  # (the speaker task moves audio into the playout buffer)
        await call.play_tick()
        clock.advance_to(clock.now() + FRAME_S)


def _heard(call: Call) -> list[str]:
    return [e["utterance"] for e in call.timeline if e["type"] == "agent.heard"]


async def test_two_utterances_and_end_call_hang_up_when_marks_are_lost() -> None:
    call, line, session, clock = await _start()
    await session.out(_audio(1.01))  # (not a whole number of frames, nor of 5-frame marks)
    await session.out(SDKAgentLogEvent(name="between"))  # ends the first utterance
    await session.out(_audio(0.73))
    await session.out(SDKAgentEndCallEvent())
    await _tick(call, clock, 1.8)  # everything is sent, nothing is confirmed
    assert line.frames == 51 + 37 and not line.hung_up and call.playout.is_playing
    await _tick(call, clock, CONFIRM_TIMEOUT_S + 0.2)  # one confirmation timeout
    await asyncio.wait_for(call.wait_closed(), 5)
    assert line.hung_up and call.end_reason == "agent hung up"
    assert _heard(call) == [f"{call.call_id}-u1", f"{call.call_id}-u2"]


async def test_paused_playout_is_not_timed_out_as_played() -> None:
    call, line, session, clock = await _start()
    await session.out(_audio(0.5))
    await session.out(SDKAgentEndCallEvent())
    await _tick(call, clock, 0.6)  # all sent, unconfirmed
    call.playout.pause()  # (as a barge-in pause does)
    await _tick(call, clock, 3 * CONFIRM_TIMEOUT_S)
    assert call.playout.is_playing and not line.hung_up and _heard(call) == []
    call.playout.resume()
    await _tick(call, clock, CONFIRM_TIMEOUT_S + 0.2)
    await asyncio.wait_for(call.wait_closed(), 5)
    assert line.hung_up and _heard(call) == [f"{call.call_id}-u1"]
