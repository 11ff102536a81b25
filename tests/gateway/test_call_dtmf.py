"""agent.send_dtmf in the voice loop, under the virtual clock: a transport without
out-of-band DTMF (the replay transport) plays the digits as tones, in order, after the
agent's audio already queued; the tones are an utterance with no words, and barge-in
cuts them like speech."""

import numpy as np

from agent.events import SDKAgentAudioEvent, SDKAgentSendDtmfEvent
from agent.nodes import Node
from gateway.call import Call
from gateway.testing import replay_async
from media.dtmf_tones import DTMF_KEYS, dtmf_frequencies
from media.frames import FRAME_MS, SAMPLE_RATE
from tests.gateway.lines import SilentLine
from tests.kit.audio import at, detect
from tests.kit.fakes import FakeSession, NoStt
from tests.kit.speech import speech, trim_silence

HUM = (6000 * np.sin(2 * np.pi * 440 * np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE)).astype("<i2")


def bursts(pcm: np.ndarray, min_gap: int = SAMPLE_RATE // 25) -> list[np.ndarray]:
    """Stretches of sound separated by at least `min_gap` samples of silence."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > 200)
    if not len(loud):
        return []
    cuts = np.flatnonzero(np.diff(loud) > min_gap)
    starts = np.concatenate([[loud[0]], loud[cuts + 1]])
    ends = np.concatenate([loud[cuts], [loud[-1]]]) + 1
    return [pcm[a:b] for a, b in zip(starts, ends, strict=True)]


def key_of(burst: np.ndarray) -> str:
    found, _ = detect(burst)
    return next((k for k in DTMF_KEYS if sorted(dtmf_frequencies(k)) == found), "?")


def presser(digits: str, hum_first: bool = True):
    class Presser(Node):
        async def process_event(self, event):
            if event.type == "system.user.joined":
                if hum_first:  # audio already queued: the digits go after it
                    await self.send_event(SDKAgentAudioEvent(pcm=HUM.tobytes()))
                await self.send_event(SDKAgentSendDtmfEvent(digits=digits))

    async def setup(session):
        session.add_node(Presser("presser"))
        await session.start()
        await session.wait_until_complete()

    return setup


async def test_digits_play_as_tones_in_order_after_queued_audio():
    r = await replay_async(np.zeros(3 * SAMPLE_RATE, dtype=np.int16), app=presser("159#0"))
    start = int(np.flatnonzero(r.played)[0]) * SAMPLE_RATE * FRAME_MS // 1000
    assert np.array_equal(r.agent[start : start + len(HUM)], HUM)  # queued audio first ...
    tones = bursts(r.agent[start + len(HUM) :])
    assert "".join(key_of(t) for t in tones) == "159#0"  # ... then the keys, right after
    for t in tones:
        assert abs(len(t) - SAMPLE_RATE // 10) < 32  # 100 ms each (ramps under the floor)
    played = np.flatnonzero(r.played)
    assert (played[-1] - played[0] + 1) * FRAME_MS == 500 + 5 * 200  # ... then 100 ms gap
    sent = [e for e in r.events if e["type"] == "agent.send_dtmf"]
    assert [e["digits"] for e in sent] == ["159#0"]
    heard = [e for e in r.events if e["type"] == "agent.heard"]
    assert len(heard) == 2 and all(e["text"] == "" for e in heard)  # no words


async def test_barge_in_cuts_the_tones():
    words = trim_silence(speech("tell me a story please", voice="en-us"))
    caller = at(1200, words, 5000)  # (barge-in is not armed in the agent's first second)
    r = await replay_async(caller, app=presser("0123456789" * 2, hum_first=False))
    assert len(r.interrupts) == 1
    cut = int(r.interrupts[0]["at_ms"] // FRAME_MS)
    assert r.played[:cut].any() and not r.played[cut + 2 :].any()
    keys = "".join(key_of(t) for t in bursts(r.agent[: cut * SAMPLE_RATE * FRAME_MS // 1000]))
    assert 5 <= len(keys) < 10 and "0123456789".startswith(keys.rstrip("?"))


class OutOfBand(SilentLine):
    """A transport that sends DTMF itself (True) or declines (False)."""

    def __init__(self, accept: bool) -> None:
        super().__init__()
        self.accept, self.digits = accept, []

    async def send_dtmf(self, digits: str) -> bool:
        self.digits.append(digits)
        return self.accept


async def test_transport_that_sends_dtmf_gets_the_digits_and_no_tones_play():
    from runtime.clock import VirtualClock

    for accept in (True, False):
        transport, session = OutOfBand(accept), FakeSession()
        call = Call(transport, session, NoStt(), None, clock=VirtualClock())
        await call.start()
        await session.out(SDKAgentSendDtmfEvent(digits="1#"))
        assert transport.digits == ["1#"]
        assert call.agent_active is (not accept)  # declined: tones are queued instead
        await call.close()
