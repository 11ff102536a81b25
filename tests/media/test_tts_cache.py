import asyncio

import numpy as np

from media.tts.cache import CachedTTS
from media.tts.espeak import EspeakTTS


async def collect(tts, text):
    return np.concatenate([c async for c in tts.synthesize(text)])


async def test_same_text_is_synthesized_once_and_sounds_the_same():
    tts = CachedTTS(EspeakTTS())
    first = await collect(tts, "Hello, and thanks for calling.")
    second = await collect(tts, "Hello,  and thanks for calling. ")  # same words
    assert (tts.misses, tts.hits) == (1, 1)
    assert np.array_equal(first, second) and len(first) > 8000


async def test_interrupted_synthesis_is_not_cached():
    tts = CachedTTS(EspeakTTS())
    stream = tts.synthesize("This sentence is cut off by a barge-in before it ends.")
    await stream.__anext__()
    await stream.aclose()
    full = await collect(tts, "This sentence is cut off by a barge-in before it ends.")
    assert tts.misses == 2 and tts.hits == 0
    assert len(full) > 16000


async def test_least_recently_used_entries_leave_first():
    sizes = {t: (await collect(EspeakTTS(), t)).nbytes
             for t in ["One.", "Two.", "Three, four, five, six."]}
    budget = sum(sizes.values()) - 1  # all three do not fit
    tts = CachedTTS(EspeakTTS(), max_bytes=budget)
    for text in ["One.", "Two.", "One.", "Three, four, five, six."]:
        await collect(tts, text)
    assert tts._bytes <= budget
    assert "Two." not in tts._entries  # evicted first: "One." was used again after it
    assert "One." in tts._entries
    hits = tts.hits
    await asyncio.gather(collect(tts, "One."))
    assert tts.hits == hits + 1


class Counting:
    """The real engine, counting how many syntheses it ran."""

    def __init__(self) -> None:
        self.engine = EspeakTTS()
        self.sample_rate = self.engine.sample_rate
        self.runs = 0

    def check(self) -> None:
        self.engine.check()

    def synthesize(self, text):
        self.runs += 1
        return self.engine.synthesize(text)


async def test_concurrent_requests_share_one_synthesis():
    engine = Counting()
    tts = CachedTTS(engine)
    text = "Thanks for calling, how can I help you today?"
    outs = await asyncio.gather(*(collect(tts, text) for _ in range(20)))
    assert engine.runs == 1 and tts.misses == 1 and tts.shared == 19
    assert all(np.array_equal(outs[0], o) for o in outs) and len(outs[0]) > 16000
    assert np.array_equal(await collect(tts, text), outs[0]) and tts.hits == 1


async def test_one_listener_leaving_does_not_cut_the_others():
    engine = Counting()
    tts = CachedTTS(engine)
    text = "A long enough sentence so that it comes out in several pieces of audio."
    quitter = tts.synthesize(text)
    await quitter.__anext__()
    stayer = asyncio.ensure_future(collect(tts, text))
    await asyncio.sleep(0)
    await quitter.aclose()  # a barge-in on one call
    full = await stayer
    assert engine.runs == 1 and len(full) > 32000
    assert text in tts._entries  # ran to the end for the one still listening


async def test_engine_failure_reaches_every_listener():
    class Broken:
        sample_rate = 16000

        async def synthesize(self, text):
            yield np.zeros(320, dtype=np.int16)
            raise RuntimeError("engine died")

    tts = CachedTTS(Broken())
    results = await asyncio.gather(collect(tts, "x"), collect(tts, "x"), return_exceptions=True)
    assert [type(r) for r in results] == [RuntimeError, RuntimeError]
    assert "x" not in tts._entries and not tts._flights
