"""The media tick that paces every WebSocket media stream (`gateway.media_tick`): caller
audio is decoded for all calls in one pass, exactly as a per-call edge decodes it, and
reaches each call with its arrival time; each call plays one frame a tick, encoded in one
pass and sent as that call's provider messages, before the tick hears any caller; a long
tick gives other tasks turns; a peer that stops reading loses its own messages and holds
up no other call."""

import asyncio
import base64
import json
import time

import numpy as np

from agent.events import SDKAgentAudioEvent
from gateway.audio_edge import AudioEdge
from gateway.call import Call
from gateway.media_tick import (
    LOOP_TURN_S,
    MAX_FRAMES_PER_TICK,
    MAX_INBOX_FRAMES,
    MediaTick,
    TickedStream,
)
from gateway.protocols.twilio import TwilioProtocol
from gateway.transports.media_stream import MediaStreamTransport
from gateway.transports.webclient import WebClientTransport
from media.batch_edge import BatchEdge, codec_index
from media.codecs import WireFormat
from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from runtime.clock import VirtualClock
from tests.kit.fakes import FakeSession, NoStt

MULAW_8K = WireFormat("pcmu", 8000)


async def say(session: FakeSession, pcm: np.ndarray) -> None:
    """The agent plays `pcm`; its speaker queues it (a task of its own)."""
    await session.out(SDKAgentAudioEvent(pcm=pcm.tobytes(), sample_rate=SAMPLE_RATE))
    for _ in range(5):
        await asyncio.sleep(0)


class FakeSocket:
    """What a `web.WebSocketResponse` is to the transport: it records what is sent."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[dict] = []

    async def send_str(self, text: str) -> None:
        self.sent.append(json.loads(text))

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append({"event": "binary", "data": data})


async def open_stream(tick: MediaTick, sid: str, paused=lambda: False):
    protocol = TwilioProtocol()
    protocol.receive_text(json.dumps({
        "event": "start", "streamSid": sid,
        "start": {"streamSid": sid, "callSid": "CA" + sid, "accountSid": "AC1",
                  "tracks": ["inbound"], "customParameters": {},
                  "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                  "channels": 1}}}))
    ws = FakeSocket()
    transport = MediaStreamTransport(ws, protocol, paused)
    transport.open_audio(MULAW_8K, tick)
    session = FakeSession()
    call = Call(transport, session, NoStt(), None, clock=VirtualClock())
    transport.call = call
    await call.start()
    tick.join(transport)
    heard: list[tuple[np.ndarray, float]] = []
    real = call.caller_frame

    async def spy(frame, arrived=None):
        heard.append((frame.copy(), arrived))
        await real(frame, arrived)

    call.caller_frame = spy
    return transport, ws, session, heard


def tone(hz: float, frames: int) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    return (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


async def test_caller_audio_is_decoded_as_a_per_call_edge_does_with_its_arrival_times():
    tick = MediaTick()
    a, _, _, heard_a = await open_stream(tick, "MZa")
    b, _, _, heard_b = await open_stream(tick, "MZb")
    ref_a, ref_b = AudioEdge(MULAW_8K), AudioEdge(MULAW_8K)
    wire_a = MULAW_8K.encode(tone(440, 6)[::2])
    wire_b = MULAW_8K.encode(tone(1000, 6)[::2])
    # a: 20 ms payloads, two of them in one tick; b: pieces cut across frame boundaries
    a.received(wire_a[:160], 1.0)
    a.received(wire_a[160:320], 1.01)
    b.received(wire_b[:100], 1.0)
    await tick.tick([a, b])
    b.received(wire_b[100:400], 1.02)
    a.received(wire_a[320:480], 1.02)
    await tick.tick([a, b])
    b.received(wire_b[400:], 1.05)
    await tick.tick([a, b])

    want_a = ref_a.decode(wire_a[:480])
    want_b = ref_b.decode(wire_b)
    assert [t for _, t in heard_a] == [1.0, 1.01, 1.02]
    assert [t for _, t in heard_b] == [1.02, 1.02, 1.05, 1.05, 1.05, 1.05]
    assert len(heard_a) == 3 and len(heard_b) == len(want_b) == 6
    for (got, _), want in zip(heard_a + heard_b, want_a + want_b, strict=True):
        assert np.array_equal(got, want)


async def test_each_call_plays_one_frame_a_tick_encoded_as_a_per_call_edge_does():
    tick = MediaTick()
    a, ws_a, session_a, _ = await open_stream(tick, "MZa")
    b, ws_b, session_b, _ = await open_stream(tick, "MZb")
    pcm_a, pcm_b = tone(440, 4), tone(700, 4)
    await say(session_a, pcm_a)
    await say(session_b, pcm_b)
    for ws in (ws_a, ws_b):  # the first frame of a talkspurt goes out at once...
        assert sum(m["event"] == "media" for m in ws.sent) == 1
    for n in range(2, 5):
        await tick.tick([a, b])
        for ws in (ws_a, ws_b):  # ... then one frame a tick
            assert sum(m["event"] == "media" for m in ws.sent) == n
    await tick.tick([a, b])  # (the audio ran out: nothing more)
    for ws, pcm, sid in ((ws_a, pcm_a, "MZa"), (ws_b, pcm_b, "MZb")):
        media = [m for m in ws.sent if m["event"] == "media"]
        assert {m["streamSid"] for m in media} == {sid}
        ref = AudioEdge(MULAW_8K)
        want = b"".join(ref.encode(pcm[i : i + FRAME_SAMPLES])
                        for i in range(0, len(pcm), FRAME_SAMPLES))
        assert b"".join(base64.b64decode(m["media"]["payload"]) for m in media) == want
        assert any(m["event"] == "mark" for m in ws.sent)  # what the far end played


async def test_a_tick_sends_every_call_s_frame_before_it_hears_any_caller_audio():
    tick = MediaTick()
    a, ws_a, session_a, heard_a = await open_stream(tick, "MZa")
    b, ws_b, session_b, heard_b = await open_stream(tick, "MZb")
    await say(session_a, tone(440, 4))
    await say(session_b, tone(700, 4))
    order: list[str] = []
    for name, ws in (("a", ws_a), ("b", ws_b)):
        real_send = ws.send_str

        async def send_str(text, real_send=real_send, name=name):
            order.append(f"sent {name}")
            await real_send(text)

        ws.send_str = send_str
    for name, transport in (("a", a), ("b", b)):
        call = transport.call
        real_hear = call.caller_frame

        async def caller_frame(frame, arrived=None, real_hear=real_hear, name=name):
            order.append(f"heard {name}")
            await real_hear(frame, arrived)

        call.caller_frame = caller_frame
    wire = MULAW_8K.encode(tone(300, 1)[::2])
    a.received(wire, 1.0)
    b.received(wire, 1.0)
    await tick.tick([a, b])
    sends = [i for i, what in enumerate(order) if what.startswith("sent")]
    hears = [i for i, what in enumerate(order) if what.startswith("heard")]
    assert {order[i] for i in sends} >= {"sent a", "sent b"}
    assert sorted(order[i] for i in hears) == ["heard a", "heard b"]
    assert max(sends) < min(hears)  # the frames went out before the tick heard anyone


async def test_a_long_tick_gives_other_tasks_turns_between_calls():
    """A reply waiting on the loop (a recogniser's answer, the agent's events) runs after
    a slice of the tick's work, not after every call's."""
    tick = MediaTick()
    streams = [await open_stream(tick, f"MZ{i}") for i in range(4)]
    order: list[str] = []
    for i, (transport, _ws, _session, _heard) in enumerate(streams):
        call = transport.call
        real_hear = call.caller_frame

        async def caller_frame(frame, arrived=None, real_hear=real_hear, i=i):
            order.append(f"heard {i}")
            end = time.perf_counter() + 2 * LOOP_TURN_S  # a call that takes long to hear
            while time.perf_counter() < end:
                pass
            await real_hear(frame, arrived)

        call.caller_frame = caller_frame
        transport.received(MULAW_8K.encode(tone(300, 1)[::2]), 1.0)

    async def reply() -> None:
        order.append("reply")

    task = asyncio.get_running_loop().create_task(reply())  # ready before the tick starts
    await tick.tick([s[0] for s in streams])
    await task
    assert sorted(order) == ["heard 0", "heard 1", "heard 2", "heard 3", "reply"]
    assert order.index("reply") < order.index("heard 3")  # it ran before the tick ended


async def test_a_peer_that_stops_reading_loses_its_messages_and_holds_up_no_one():
    tick = MediaTick()
    stuck = {"paused": False}
    a, ws_a, session_a, _ = await open_stream(tick, "MZa", lambda: stuck["paused"])
    b, ws_b, session_b, _ = await open_stream(tick, "MZb")
    for session in (session_a, session_b):
        await say(session, tone(440, 5))
    stuck["paused"] = True  # a's socket is full: its peer stopped reading
    for _ in range(4):
        await tick.tick([a, b])
    assert sum(m["event"] == "media" for m in ws_a.sent) == 1  # the first, sent at once
    assert sum(m["event"] == "media" for m in ws_b.sent) == 5
    assert a.dropped >= 4 and b.dropped == 0


async def test_a_call_that_left_takes_no_more_audio_and_frees_its_slot():
    tick = MediaTick()
    a, ws_a, session_a, heard_a = await open_stream(tick, "MZa")
    slot = a.slot
    tick.leave(a)
    a.close_audio()
    a.received(b"\xff" * 160, 1.0)
    await say(session_a, tone(440, 2))  # (no first frame at once either)
    await tick.tick([a])  # (a tick that began before it left)
    assert heard_a == [] and ws_a.sent == []
    b, _, _, _ = await open_stream(tick, "MZb")
    assert b.slot == slot  # the next call gets the slot, with silent history


async def test_a_call_whose_voice_loop_raises_is_ended_and_the_others_go_on():
    tick = MediaTick()
    a, ws_a, _, _ = await open_stream(tick, "MZa")
    b, ws_b, session_b, heard_b = await open_stream(tick, "MZb")

    async def broken(frame, arrived=None):
        raise RuntimeError("a bug in one call")

    a.call.caller_frame = broken
    await say(session_b, tone(440, 3))
    for member in (a, b):
        member.received(b"\xff" * 160, 1.0)
    await tick.tick([a, b])
    for _ in range(5):
        await asyncio.sleep(0)
    assert a.call.closed and not b.call.closed
    assert len(heard_b) == 1
    await tick.tick([a, b])
    assert sum(m["event"] == "media" for m in ws_b.sent) == 3  # b plays on


async def test_a_peer_sending_faster_than_real_time_gets_a_few_frames_a_tick():
    tick = MediaTick()
    a, _, _, heard_a = await open_stream(tick, "MZa")
    b, _, _, heard_b = await open_stream(tick, "MZb")
    a.received(b"\xff" * 160 * 30, 1.0)  # 600 ms at once: a burst
    b.received(b"\xff" * 160, 1.0)
    await tick.tick([a, b])
    assert len(heard_a) == MAX_FRAMES_PER_TICK and len(heard_b) == 1
    for _ in range(5):
        await tick.tick([a, b])
    assert len(heard_a) == 30  # the burst drained over the next ticks
    a.received(b"\xff" * 160 * (MAX_INBOX_FRAMES + 50), 2.0)  # a flood: the oldest go
    assert a.dropped_in == 50
    ticks = 0
    while a.take_payloads()[0]:
        ticks += 1
    assert ticks * MAX_FRAMES_PER_TICK == MAX_INBOX_FRAMES


async def test_a_web_client_in_odd_chunks_goes_through_its_own_edge():
    """PCM16 at 16 kHz in 1024-sample chunks, as the README's browser client sends it: whole
    20 ms frames reach the call as its own edge decodes them; its audio goes out as binary
    20 ms frames."""
    tick = MediaTick()
    ws = FakeSocket()
    web = WebClientTransport(ws)
    wire = WireFormat("l16", SAMPLE_RATE)
    web.open_audio(wire, tick)
    assert web.slot is None and web.edge is not None  # not G.711: no batch slot
    session = FakeSession()
    web.call = Call(web, session, NoStt(), None, clock=VirtualClock())
    await web.call.start()
    tick.join(web)
    heard: list[np.ndarray] = []
    real = web.call.caller_frame

    async def spy(frame, arrived=None):
        heard.append(frame.copy())
        await real(frame, arrived)

    web.call.caller_frame = spy
    pcm = tone(300, 16)[: 3 * 1024]  # three chunks: 9.6 whole frames
    for i in range(3):
        web.received(pcm[i * 1024 : (i + 1) * 1024].tobytes(), 1.0 + i * 0.064)
        await tick.tick([web])
    await tick.tick([web])
    want = AudioEdge(wire).decode(pcm[: 9 * FRAME_SAMPLES].tobytes())
    assert len(heard) == len(want) == 9
    for got, frame in zip(heard, want, strict=True):
        assert np.array_equal(got, frame)
    await say(session, tone(440, 2))
    await tick.tick([web])
    sent = [m["data"] for m in ws.sent if m.get("event") == "binary"]
    assert [len(d) for d in sent] == [2 * FRAME_SAMPLES] * 2  # 20 ms of PCM16 each


class _LoggedCall:
    """What the tick asks of a call, written down."""

    closed = False

    def __init__(self) -> None:
        self.log: list = []

    async def play_tick(self) -> None:
        self.log.append("play")

    async def dtmf(self, digit: str) -> None:
        self.log.append(("dtmf", digit))

    async def caller_frame(self, frame: np.ndarray, arrived: float | None = None) -> None:
        self.log.append(("frame", frame.copy(), arrived))


async def test_a_none_payload_is_heard_as_silence_and_digits_come_before_the_audio():
    """A member's None payload (SIP: no RTP came for the tick) is heard as a silent frame
    without decoding; its digits reach the call before the tick's audio; `after_play` runs
    right after the call played its frame."""
    tick = MediaTick(VirtualClock(start=5.0))
    payload = MULAW_8K.encode(tone(440, 8)[:160])
    order: list[str] = []

    class Member(TickedStream):
        def take_payloads(self):
            return [None, payload], [5.0, 5.0]

        def take_digits(self):
            return ["5"]

        def after_play(self):
            order.append("after_play")

    m = Member()
    m.slot, m.codec, m._tick = tick.edges.acquire(), codec_index("pcmu"), tick
    m.call = call = _LoggedCall()  # type: ignore[assignment]
    await tick.tick([m])
    assert call.log[0] == "play" and order == ["after_play"]
    assert call.log[1] == ("dtmf", "5")
    (_, silent, t0), (_, heard, t1) = call.log[2:]
    assert not silent.any() and t0 == t1 == 5.0
    edges = BatchEdge()  # the same payload in a fresh slot: the tick decoded it as such
    want = edges.decode([edges.acquire()], [codec_index("pcmu")], [payload])[0]
    assert np.array_equal(heard, want) and heard.any()
