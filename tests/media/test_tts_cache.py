import asyncio

import numpy as np

from media.tts_cache import CachedTTS
from media.tts_espeak import EspeakTTS


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
