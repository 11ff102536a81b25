"""The voice loop is paced from outside (by its transport's media tick, as every live call
and replay is): it plays nothing between ticks, one frame per `play_tick()`, and runs a
transfer and a hang-up queued behind the audio in order, without holding up the tick."""

import asyncio

import numpy as np

from agent.events import SDKAgentAudioEvent, SDKAgentEndCallEvent, SDKAgentTransferConversationEvent
from gateway.call import Call
from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from runtime.clock import VirtualClock
from tests.gateway.lines import SilentLine
from tests.kit.fakes import FakeSession, NoStt

FRAMES = 10
HUM = (6000 * np.sin(2 * np.pi * 440 * np.arange(FRAMES * FRAME_SAMPLES) / SAMPLE_RATE)
       ).astype("<i2")


class PacedTransport(SilentLine):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[np.ndarray] = []
        self.actions: list[str] = []
        self.release_transfer = asyncio.Event()

    async def send_audio(self, frame: np.ndarray) -> None:
        self.sent.append(frame.copy())

    async def hangup(self) -> None:
        self.actions.append("hangup")

    async def transfer(self, target: str) -> None:
        self.actions.append(f"transfer:{target}")
        await self.release_transfer.wait()  # a REFER waiting for its answer
        self.actions.append("transferred")


async def test_transport_paced_playout_then_transfer_and_hangup_in_order() -> None:
    transport, session = PacedTransport(), FakeSession()
    call = Call(transport, session, NoStt(), None, clock=VirtualClock())
    await call.start()
    await session.out(SDKAgentAudioEvent(pcm=HUM.tobytes(), sample_rate=SAMPLE_RATE))
    await session.out(SDKAgentTransferConversationEvent(transfer_call_number="+15550100"))
    await session.out(SDKAgentEndCallEvent())
    for _ in range(5):
        await asyncio.sleep(0)
    assert transport.sent == []  # nothing plays between ticks

    for i in range(FRAMES):
        await call.play_tick()
        assert len(transport.sent) == i + 1  # one frame per tick
    assert np.array_equal(np.concatenate(transport.sent), HUM)

    for _ in range(3):  # drained: the transfer starts; the tick never waits for it
        await call.play_tick()
        await asyncio.sleep(0)
    assert transport.actions == ["transfer:+15550100"]
    assert not call.closed  # the hang-up waits for the transfer before it
    transport.release_transfer.set()
    await asyncio.wait_for(call.wait_closed(), 1.0)
    assert transport.actions == ["transfer:+15550100", "transferred", "hangup"]
    assert len(transport.sent) == FRAMES
