"""OpenAITTS against a local server speaking OpenAI's `/v1/audio/speech` over real sockets
(tests/kit/servers/openai_speech_server.py: espeak-ng speech as 24 kHz PCM): the audio arrives at
16 kHz, sample for sample what the server spoke, piece by piece as it is sent; closing the
stream drops the request; errors and a missing key are clear."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from media.resample import StreamResampler
from media.tts import synthesize_all
from media.tts.openai import DEFAULT_MODEL, DEFAULT_VOICE, OpenAITTS
from tests.kit.servers.openai_speech_server import RATE, speech_server
from tests.kit.speech import needs_espeak, speech

pytestmark = needs_espeak

TEXT = "Thanks for calling, how can I help you today?"
KEY = "sk-test-key"


def expected_16k(text: str) -> np.ndarray:
    """What the server sends (espeak-ng at 24 kHz), resampled as the engine resamples it."""
    rs = StreamResampler(RATE, 16000)
    pcm = speech(text, rate=RATE)
    return np.concatenate((rs.process(pcm), rs.flush()))


async def test_speech_arrives_at_16_khz_exactly_as_the_server_spoke_it():
    async with speech_server(api_key=KEY) as server:
        tts = OpenAITTS(api_key=KEY, base_url=server.url)
        tts.check()
        try:
            audio = await synthesize_all(tts, TEXT)
        finally:
            await tts.aclose()
    assert server.requests == [{"model": DEFAULT_MODEL, "voice": DEFAULT_VOICE, "input": TEXT,
                                "response_format": "pcm"}]
    assert audio.dtype == np.int16
    want = expected_16k(TEXT)
    # pieces of 4801 bytes split samples in two: every sample must still be the same
    assert len(audio) == len(want)
    assert np.array_equal(audio, want)
    assert 1.5 < len(audio) / 16000 < 5


async def test_the_first_piece_plays_before_the_server_has_sent_the_rest():
    async with speech_server(api_key=KEY) as server:
        server.stall_after = 3  # three pieces (about 300 ms), then nothing until released
        tts = OpenAITTS(api_key=KEY, base_url=server.url, voice="nova", model="tts-1",
                        instructions="Speak warmly.", speed=1.25)
        stream = tts.synthesize(TEXT)
        try:
            got = [await asyncio.wait_for(anext(stream), 5)]
            # 3 x 4801 bytes at 24 kHz are 4800 samples at 16 kHz; the engine reads 40 ms
            # pieces, so all but the last incomplete one (about 4480 samples) come out now
            while sum(map(len, got)) < 4400:
                got.append(await asyncio.wait_for(anext(stream), 5))
            assert server.finished == 0  # still stalled: these came piece by piece
            server.release()
            got += [chunk async for chunk in stream]
        finally:
            await stream.aclose()
            await tts.aclose()
    assert server.requests[0]["voice"] == "nova"
    assert server.requests[0]["model"] == "tts-1"
    assert server.requests[0]["instructions"] == "Speak warmly."
    assert server.requests[0]["speed"] == 1.25
    assert np.array_equal(np.concatenate(got), expected_16k(TEXT))


async def test_closing_the_stream_drops_the_request_at_once():
    async with speech_server(api_key=KEY) as server:
        server.stall_after = 2
        tts = OpenAITTS(api_key=KEY, base_url=server.url)
        stream = tts.synthesize(TEXT)
        await asyncio.wait_for(anext(stream), 5)
        await stream.aclose()  # barge-in
        await asyncio.wait_for(server.disconnected.wait(), 5)
        assert server.finished == 0
        # the engine (its connection pool) still works for the next sentence
        server.stall_after = None
        assert len(await synthesize_all(tts, "Yes.")) > 1600
        await tts.aclose()


@pytest.mark.parametrize(("setup", "message"), [
    (lambda s: setattr(s, "status", 500), "HTTP 500: The server had an error."),
    (lambda s: setattr(s, "api_key", "another-key"), "HTTP 401: Incorrect API key provided."),
    (lambda s: setattr(s, "cut_after", 2), "text-to-speech at http://127.0.0.1:"),
])
async def test_server_errors_are_raised_as_runtime_errors_naming_the_server(setup, message):
    async with speech_server(api_key=KEY) as server:
        setup(server)
        tts = OpenAITTS(api_key=KEY, base_url=server.url)
        with pytest.raises(RuntimeError, match="text-to-speech at http://127.0.0.1") as info:
            await synthesize_all(tts, TEXT)
        assert message in str(info.value)
        await tts.aclose()


async def test_an_unreachable_server_is_a_runtime_error():
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tts = OpenAITTS(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", timeout=2.0)
    with pytest.raises(RuntimeError, match=f"text-to-speech at http://127.0.0.1:{port}/v1: "
                                           "APIConnectionError"):
        await synthesize_all(tts, TEXT)
    await tts.aclose()


def test_a_missing_key_is_named_at_start_up(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="OpenAI text-to-speech needs a key: set "
                                           "OPENAI_API_KEY"):
        OpenAITTS().check()
    OpenAITTS(base_url="http://127.0.0.1:1/v1").check()  # a local server: a placeholder key
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    OpenAITTS().check()


def test_bad_native_rate_is_refused():
    with pytest.raises(ValueError, match="native_rate"):
        OpenAITTS(api_key=KEY, native_rate=100)


async def test_a_failed_sentence_is_one_log_line_and_the_next_one_plays(caplog):
    from gateway.speaker import Speaker
    from media.playout import PlayoutBuffer

    async with speech_server(api_key=KEY) as server:
        tts = OpenAITTS(api_key=KEY, base_url=server.url)
        playout = PlayoutBuffer()
        speaker = Speaker(tts, playout, call_id="c1")
        server.status = 503
        speaker.say("u1", "This one fails.")
        while speaker.busy:
            await asyncio.sleep(0.01)
        server.status = None
        speaker.say("u2", "This one plays.")
        while speaker.busy:
            await asyncio.sleep(0.01)
        await speaker.close()
        await tts.aclose()
    failed = [r for r in caplog.records if "speech synthesis failed" in r.getMessage()]
    assert len(failed) == 1 and failed[0].exc_info is None  # one line, no traceback
    assert "'This one fails.': text-to-speech at http://127.0.0.1" in failed[0].getMessage()
    assert "HTTP 503" in failed[0].getMessage()
    assert playout.queued_ms > 1000  # the second sentence is in playout
    assert [r["input"] for r in server.requests] == ["This one fails.", "This one plays."]
