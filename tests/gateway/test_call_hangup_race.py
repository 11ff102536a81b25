"""A caller who hangs up while barging in: the transport reports the hang-up while the
voice loop is clearing the far end's audio (the `clear` is the await in between). The
call closes cleanly; nothing touches its closed recogniser stream afterwards (seen on a
Twilio call: 'this STT stream is closed' and a traceback, the call ended as an error)."""


import numpy as np

from agent.events import SDKAgentAudioEvent
from gateway.call import Call
from media.frames import FRAME_SAMPLES, SAMPLE_RATE, split_frames
from runtime.clock import VirtualClock
from tests.gateway.lines import SilentLine
from tests.kit.fakes import FakeSession
from tests.kit.speech import speech, trim_silence


class _ClosingStt:
    """A recogniser whose stream refuses audio once closed, as pocketsphinx's does."""

    def __init__(self) -> None:
        self.fed_after_close = 0
        self.closed = False

    def new_stream(self) -> "_ClosingStt":
        return self

    def feed(self, frame: np.ndarray) -> list:
        if self.closed:
            self.fed_after_close += 1
            raise RuntimeError("this STT stream is closed")
        return []

    def end_of_turn(self):
        return None

    def close(self) -> None:
        self.closed = True


class HangsUpWhileClearing(SilentLine):
    def __init__(self) -> None:
        super().__init__()
        self.call: Call | None = None
        self.clears = 0

    async def clear_audio(self) -> None:
        self.clears += 1
        assert self.call is not None
        await self.call.close("stop")  # the provider's stop message, handled meanwhile


async def test_hang_up_during_the_barge_in_closes_the_call_cleanly() -> None:
    transport, session, stt = HangsUpWhileClearing(), FakeSession(), _ClosingStt()
    clock = VirtualClock()
    call = Call(transport, session, stt, None, clock=clock)
    transport.call = call
    await call.start()
    agent = trim_silence(speech("one two three four five six seven eight nine ten eleven"))
    await session.out(SDKAgentAudioEvent(pcm=agent.astype("<i2").tobytes(),
                                         sample_rate=SAMPLE_RATE))
    words = trim_silence(speech("tell me a story please", voice="en+m3"))
    caller = np.zeros(len(agent), np.int16)
    start = int(1.5 * SAMPLE_RATE)  # past the first second, when barge-in is armed
    caller[start:start + len(words)] = words[: len(caller) - start]
    for i, frame in enumerate(split_frames(caller)):
        if call.closed:
            break
        await call.play_tick()
        clock.advance_to((i + 1) * FRAME_SAMPLES / SAMPLE_RATE)
        await call.caller_frame(frame)  # raised before the fix
    assert transport.clears == 1  # it did barge in ...
    assert call.closed  # ... and the hang-up closed the call
    assert stt.fed_after_close == 0
