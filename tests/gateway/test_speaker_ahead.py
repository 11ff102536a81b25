"""The speaker synthesises a bounded amount ahead of playout (issue 23: a megabyte of
`agent.speak` must not become hours of audio in memory): it waits while the playout buffer
holds more than `ahead_s`, goes on as pops drain it, sends a long text to the engine a
sentence at a time, and waiting for room is not being busy (a replay moves time on)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator

import numpy as np

from gateway.speaker import AHEAD_S, LONG_TEXT_CHARS, RESUME_BELOW_S, Speaker
from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.playout import PlayoutBuffer

CHUNK_S = 0.25


class FastTTS:
    """An engine far faster than real time: every sentence is 2 s of audio, in 0.25 s
    chunks, and it counts the chunks it made."""

    sample_rate = SAMPLE_RATE

    def __init__(self, seconds: float = 2.0) -> None:
        self.asked: list[str] = []
        self.made_s = 0.0
        self.seconds = seconds

    def check(self) -> None:
        return None

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        self.asked.append(text)
        for _ in range(round(self.seconds / CHUNK_S)):
            await asyncio.sleep(0)
            self.made_s += CHUNK_S
            yield np.full(int(CHUNK_S * SAMPLE_RATE), 100, dtype=np.int16)


def megabyte_of_text() -> str:
    sentence = "This is one of very many sentences the agent was asked to say. "
    return sentence * (1_000_000 // len(sentence))


async def settle(rounds: int = 20) -> None:
    for _ in range(rounds):
        await asyncio.sleep(0)


async def test_a_megabyte_of_text_is_synthesised_only_a_little_ahead_of_playout():
    tts, playout = FastTTS(), PlayoutBuffer()
    speaker = Speaker(tts, playout, call_id="c1")
    text = megabyte_of_text()
    speaker.say("u1", text)
    await settle(200)
    assert speaker.waiting_for_room and not speaker.busy  # full: it waits, not busy
    peak_ms = playout.queued_ms
    played = 0
    for _ in range(round(60 / 0.02)):  # a minute of playout, a frame at a time
        frame = playout.pop()
        assert frame is not None, f"playout ran dry after {played} frames"
        played += 1
        await settle(3)
        peak_ms = max(peak_ms, playout.queued_ms)
    assert peak_ms <= (AHEAD_S + CHUNK_S) * 1000, peak_ms
    # it went on as playout drained, and made only what played plus the bound
    assert 60 + AHEAD_S - RESUME_BELOW_S - CHUNK_S <= tts.made_s <= 60 + AHEAD_S + CHUNK_S
    # the engine was asked for sentences, not the megabyte
    assert tts.asked and max(len(t) for t in tts.asked) <= 300
    assert sum(len(t) for t in tts.asked) < 60 * 80  # a few dozen sentences so far
    await speaker.cancel()
    assert not speaker.waiting_for_room and not speaker.busy
    frames = 0
    while playout.pop() is not None:  # what was made plays out; nothing new is made
        frames += 1
        await settle(2)
    made = tts.made_s
    await settle()
    assert tts.made_s == made and frames * FRAME_SAMPLES <= (AHEAD_S + CHUNK_S) * SAMPLE_RATE


async def test_short_texts_go_whole_and_at_once():
    tts, playout = FastTTS(seconds=1.0), PlayoutBuffer()
    speaker = Speaker(tts, playout, call_id="c1")
    texts = ["Hello there, and thanks for calling.", "x" * LONG_TEXT_CHARS]
    for i, text in enumerate(texts):
        speaker.say(f"u{i}", text)
    while speaker.busy:
        await asyncio.sleep(0)
    assert tts.asked == texts  # one request each, as given
    assert playout.queued_ms == 2000  # within the bound: no waiting
    await speaker.close()


async def test_a_flush_wakes_a_waiting_speaker_and_text_maps_by_sentence():
    tts, playout = FastTTS(), PlayoutBuffer()
    speaker = Speaker(tts, playout, call_id="c1", ahead_s=3.0)
    sentences = [f"Sentence number {i} is here." for i in range(200)]
    speaker.say("u1", " ".join(sentences))
    await settle(200)
    assert speaker.waiting_for_room
    assert tts.asked == sentences[:2]  # 4 s made: the second sentence went past 3 s
    for _ in range(100):  # two seconds play: the first sentence is heard
        playout.pop()
    playout.flush()  # a barge-in: the speaker is woken, the call cancels it
    assert not speaker.waiting_for_room
    await speaker.cancel()
    speaker.say("u2", "After the barge-in.")
    while speaker.busy:
        await asyncio.sleep(0)
    assert tts.asked[-1] == "After the barge-in."
    assert playout.queued_ms == 2000
    await speaker.close()


async def test_a_replay_plays_a_megabyte_of_speech_without_a_gap():
    """Under a virtual clock: the speaker's wait for room lets time move on (it is not busy),
    and the pops that drain playout wake it, so the agent talks for the whole call."""
    from agent.events import SDKAgentSpeakEvent
    from agent.nodes.base import Node
    from gateway.testing import replay_async

    class Talker(Node):
        async def process_event(self, event):
            if event.type == "system.user.joined":
                await self.send_event(SDKAgentSpeakEvent(text=megabyte_of_text()))

    async def setup(session):
        session.add_node(Talker(name="talker"))
        await session.start()
        await session.wait_until_complete()

    tts = FastTTS()
    seconds = 40
    result = await replay_async(np.zeros(seconds * SAMPLE_RATE, dtype=np.int16), app=setup,
                                tts=tts, tail_ms=0)
    played = np.asarray(result.played, dtype=bool)
    first = int(np.argmax(played))
    assert first < 10 and played[first:].all(), np.flatnonzero(~played[first:])[:10]
    assert tts.made_s <= seconds + AHEAD_S + CHUNK_S  # made as it played, not all at once
