"""EspeakTTS with the real espeak-ng program, and its incremental WAV parser."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import io
import signal
import wave
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.frames import split_frames
from media.stt.pocketsphinx import PocketSphinxSTT
from media.tts import espeak as tts_espeak
from media.tts import synthesize_all
from media.tts.espeak import EspeakTTS, WavFormatError, WavStreamParser
from tests.kit.speech import needs_espeak, speech

LONG_TEXT = " ".join(f"This is sentence number {i} of a long reading." for i in range(60))


def make_wav(pcm: np.ndarray, rate: int = 22050, channels: int = 1) -> bytes:
    bio = io.BytesIO()
    with wave.open(bio, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.astype("<i2").tobytes())
    return bio.getvalue()


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Records every process the engine starts."""
    procs: list[Any] = []
    real = tts_espeak.spawn

    async def spy(argv: list[str], stdin: bytes | None = None) -> Any:
        proc = await real(argv, stdin=stdin)
        procs.append(proc)
        return proc

    monkeypatch.setattr(tts_espeak, "spawn", spy)
    return procs


# -- the engine ---------------------------------------------------------------------------
@needs_espeak
async def test_audio_matches_espeak_resampled_to_16k() -> None:
    tts = EspeakTTS()
    tts.check()
    text = "The library opens at nine thirty tomorrow morning."
    got = await synthesize_all(tts, text)
    ref = speech(text)  # the same espeak output resampled in one piece
    assert got.dtype == np.int16 and tts.sample_rate == 16000
    assert abs(len(got) - len(ref)) <= 160  # within 10 ms
    n = min(len(got), len(ref))
    assert np.corrcoef(got[:n].astype(float), ref[:n].astype(float))[0, 1] > 0.99


@needs_espeak
async def test_long_text_streams_in_many_chunks(spawned: list[Any]) -> None:
    tts = EspeakTTS()
    chunks = [c async for c in tts.synthesize(LONG_TEXT)]
    assert len(chunks) > 10
    assert all(c.dtype == np.int16 and c.ndim == 1 and len(c) for c in chunks)
    assert spawned[0].returncode == 0


@needs_espeak
async def test_closing_early_kills_espeak(spawned: list[Any]) -> None:
    stream = EspeakTTS().synthesize(LONG_TEXT)
    first = await anext(stream)
    assert len(first)
    proc = spawned[0]
    assert proc.returncode is None  # still speaking (blocked on the full pipe)
    await stream.aclose()
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def stalling_espeak(tmp_path: Any) -> str:
    """A stand-in program that writes espeak's WAV header, then never finishes."""
    header = make_wav(np.zeros(0, np.int16))
    (tmp_path / "header.wav").write_bytes(header)
    script = tmp_path / "espeak-stall"
    script.write_text(f"#!/bin/sh\ncat {tmp_path / 'header.wav'}\nexec sleep 600\n")
    script.chmod(0o755)
    return str(script)


async def test_cancel_while_waiting_for_audio_kills_the_process(
        spawned: list[Any], stalling_espeak: str) -> None:
    stream = EspeakTTS(executable=stalling_espeak).synthesize("hello")
    task = asyncio.create_task(anext(stream))
    while not spawned:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)  # the generator is now blocked reading the pipe
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spawned[0].returncode == -signal.SIGKILL


@needs_espeak
async def test_cancelling_a_consumer_that_closes_kills_espeak(spawned: list[Any]) -> None:
    got_audio = asyncio.Event()

    async def consume() -> None:  # the Speaker's pattern: always aclose in finally
        async with contextlib.aclosing(EspeakTTS().synthesize(LONG_TEXT)) as stream:
            async for _ in stream:
                got_audio.set()
                await asyncio.sleep(3600)  # a slow playout

    task = asyncio.create_task(consume())
    await got_audio.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spawned[0].returncode == -signal.SIGKILL


@needs_espeak
async def test_an_abandoned_stream_is_killed_when_collected(spawned: list[Any]) -> None:
    got_audio = asyncio.Event()

    async def consume() -> None:  # careless consumer: no aclose
        async for _ in EspeakTTS().synthesize(LONG_TEXT):
            got_audio.set()
            await asyncio.sleep(3600)

    task = asyncio.create_task(consume())
    await got_audio.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    del task
    gc.collect()  # asyncio's async-generator finalizer schedules aclose()
    for _ in range(100):
        if spawned[0].returncode is not None:
            break
        await asyncio.sleep(0.01)
    assert spawned[0].returncode == -signal.SIGKILL


@needs_espeak
async def test_concurrent_syntheses_are_independent() -> None:
    tts = EspeakTTS()
    texts = ["Hello there.", "Goodbye for now, and thank you."]
    outs = await asyncio.gather(*(synthesize_all(tts, t) for t in texts))
    for text, out in zip(texts, outs, strict=True):
        ref = speech(text)
        n = min(len(out), len(ref))
        assert abs(len(out) - len(ref)) <= 160
        assert np.corrcoef(out[:n].astype(float), ref[:n].astype(float))[0, 1] > 0.99


@needs_espeak
async def test_empty_text_and_option_like_text(spawned: list[Any]) -> None:
    tts = EspeakTTS()
    assert len(await synthesize_all(tts, "   ")) == 0
    assert spawned == []  # nothing started for nothing to say
    assert len(await synthesize_all(tts, "-v en-gb is not an option here")) > 16000


@needs_espeak
async def test_espeak_speech_is_recognised_by_pocketsphinx() -> None:
    phrases = ["what time is it", "tell me a story", "goodbye", "operator", "hello"]
    stt = PocketSphinxSTT(phrases=phrases)
    stream = stt.new_stream()
    heard = []
    for voice in ("en-us", "en+f3"):
        tts = EspeakTTS(voice=voice)
        for p in phrases:
            pcm = await synthesize_all(tts, p)
            for frame in split_frames(np.concatenate((np.zeros(3200, np.int16), pcm))):
                stream.feed(frame)
            final = stream.end_of_turn()
            heard.append(final.text if final else None)
    stream.close()
    assert heard == phrases * 2


@needs_espeak
async def test_bad_voice_is_a_clear_error() -> None:
    tts = EspeakTTS(voice="nosuchvoice")
    with pytest.raises(RuntimeError, match="nosuchvoice"):
        tts.check()
    with pytest.raises(RuntimeError, match="exited with"):
        await synthesize_all(tts, "hello")


async def test_missing_program_is_a_clear_error() -> None:
    tts = EspeakTTS(executable="/nonexistent/espeak-ng")
    with pytest.raises(RuntimeError, match="apt-get install espeak-ng"):
        tts.check()
    with pytest.raises(RuntimeError, match="cannot start"):
        await synthesize_all(tts, "hello")


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        EspeakTTS(speed=10)
    with pytest.raises(ValueError):
        EspeakTTS(pitch=150)


# -- the WAV parser ---------------------------------------------------------------------
def test_parser_reads_espeak_style_unknown_sizes() -> None:
    pcm = (np.sin(np.arange(2205) / 5) * 8000).astype(np.int16)
    wav = bytearray(make_wav(pcm))
    wav[4:8] = (0x7FFFF024).to_bytes(4, "little")  # what espeak-ng --stdout writes
    wav[40:44] = (0x7FFFF000).to_bytes(4, "little")
    p = WavStreamParser()
    out = np.concatenate([p.feed(bytes(wav[i : i + 7])) for i in range(0, len(wav), 7)])
    assert p.sample_rate == 22050
    assert np.array_equal(out, pcm)


def test_parser_skips_extra_chunks_and_honours_a_known_size() -> None:
    pcm = np.arange(-500, 500, dtype=np.int16)
    wav = make_wav(pcm, rate=16000)
    info = b"LIST" + (5).to_bytes(4, "little") + b"INFOx\x00"  # odd size: padded
    wav = wav[:36] + info + wav[36:] + b"junk after the data"
    out = WavStreamParser().feed(wav)
    assert np.array_equal(out, pcm)


def test_parser_mixes_stereo_down() -> None:
    left = np.full(100, 1000, np.int16)
    right = np.full(100, 3000, np.int16)
    wav = make_wav(np.stack((left, right), axis=1).reshape(-1), channels=2)
    assert np.array_equal(WavStreamParser().feed(wav), np.full(100, 2000, np.int16))


@pytest.mark.parametrize("data", [b"RIFX\x00\x00\x00\x00WAVE", b"RIFF\x00\x00\x00\x00AVI "])
def test_parser_rejects_other_formats(data: bytes) -> None:
    with pytest.raises(WavFormatError):
        WavStreamParser().feed(data)


def test_parser_rejects_8_bit_and_data_before_fmt() -> None:
    bio = io.BytesIO()
    with wave.open(bio, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(1)
        w.setframerate(8000)
        w.writeframes(b"\x80" * 10)
    with pytest.raises(WavFormatError, match="16-bit"):
        WavStreamParser().feed(bio.getvalue())
    with pytest.raises(WavFormatError, match="before"):
        WavStreamParser().feed(b"RIFF\x00\x00\x00\x00WAVEdata\x04\x00\x00\x00\x01\x02\x03\x04")


@settings(max_examples=200, deadline=None)
@given(samples=st.lists(st.integers(-32768, 32767), max_size=300),
       cuts=st.lists(st.integers(0, 700), max_size=12))
def test_parser_any_split_gives_the_same_samples(samples: list[int], cuts: list[int]) -> None:
    pcm = np.array(samples, dtype=np.int16)
    wav = make_wav(pcm)
    points = sorted({c % (len(wav) + 1) for c in cuts})
    p = WavStreamParser()
    parts = [p.feed(wav[a:b]) for a, b in zip([0, *points], [*points, len(wav)], strict=True)]
    assert np.array_equal(np.concatenate(parts), pcm)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_parser_fuzz_never_crashes(data: bytes) -> None:
    p = WavStreamParser()
    try:
        out = p.feed(b"RIFF\x00\x00\x00\x00WAVE" + data)
    except WavFormatError:
        return
    assert out.dtype == np.int16
