"""OpenAISTT against a local server speaking OpenAI's `/v1/audio/transcriptions` over real
sockets (tests/kit/servers/openai_transcribe_server.py: pocketsphinx with the demo's phrases). A turn's
audio goes up as one WAV, exactly as fed, and its words come back; turns overlap without
mixing; failures give a turn without a transcript and a log line, never an exception."""

from __future__ import annotations

import asyncio
import logging
import socket

import numpy as np
import pytest

from gateway.demo import PHRASES
from media.frames import split_frames
from media.stt import Transcript
from media.stt.openai import DEFAULT_MODEL, OpenAISTT
from tests.kit.servers.openai_transcribe_server import transcribe_server
from tests.kit.speech import needs_espeak, speech

pytestmark = needs_espeak

KEY = "sk-test-key"
GAP = np.zeros(4800, np.int16)  # 300 ms, as the voice loop's pre-roll gives


def turn(text: str) -> np.ndarray:
    return np.concatenate((GAP, speech(text), GAP))


def feed(stream, pcm: np.ndarray) -> None:
    for frame in split_frames(pcm):
        assert stream.feed(frame) == []  # a whole-utterance recogniser: no partials


async def test_a_turn_goes_up_as_fed_and_its_words_come_back():
    async with transcribe_server(api_key=KEY, phrases=PHRASES) as server:
        stt = OpenAISTT(api_key=KEY, base_url=server.url)
        stt.check()
        stream = stt.new_stream()
        pcm = turn("what time is it")
        feed(stream, pcm)
        assert await stream.end_of_turn_async() == Transcript("what time is it", True)
        stream.close()
        await stt.aclose()
    (req,) = server.requests
    assert (req["model"], req["language"], req["response_format"]) == (DEFAULT_MODEL, "en",
                                                                        "json")
    assert np.array_equal(req["audio"], np.concatenate(split_frames(pcm)))  # every frame


async def test_the_caller_talks_on_while_a_turn_is_transcribed_and_turns_stay_apart():
    async with transcribe_server(api_key=KEY, phrases=PHRASES) as server:
        server.hold = True
        stt = OpenAISTT(api_key=KEY, base_url=server.url, model="whisper-1", language=None,
                        prompt="A phone call.")
        stream = stt.new_stream()
        feed(stream, turn("operator"))
        first = stream.end_of_turn_async()  # the request starts at once ...
        feed(stream, turn("goodbye"))  # ... and the stream takes the next turn meanwhile
        second = stream.end_of_turn_async()
        await asyncio.sleep(0.3)
        assert not first.done() and not second.done()
        server.release()
        assert await first == Transcript("operator", True)
        assert await second == Transcript("goodbye", True)
        stream.close()
        await stt.aclose()
    assert [r["model"] for r in server.requests] == ["whisper-1", "whisper-1"]
    assert "language" not in server.requests[0]
    assert server.requests[0]["prompt"] == "A phone call."


async def test_a_turn_too_short_to_hold_words_sends_nothing():
    async with transcribe_server(api_key=KEY, fixed_transcript="never") as server:
        stt = OpenAISTT(api_key=KEY, base_url=server.url)
        stream = stt.new_stream()
        feed(stream, np.zeros(1280, np.int16))  # 80 ms
        assert await stream.end_of_turn_async() is None
        assert await stream.end_of_turn_async() is None  # nothing at all
        stream.close()
        await stt.aclose()
    assert server.requests == []


@pytest.mark.parametrize(("setup", "logged"), [
    (lambda s: setattr(s, "status", 500), "HTTP 500: The server had an error."),
    (lambda s: setattr(s, "api_key", "another"), "HTTP 401: Incorrect API key provided."),
])
async def test_a_failed_request_is_a_turn_without_transcript_and_a_warning(setup, logged,
                                                                           caplog):
    async with transcribe_server(api_key=KEY, fixed_transcript="hello") as server:
        setup(server)
        stt = OpenAISTT(api_key=KEY, base_url=server.url)
        stream = stt.new_stream()
        feed(stream, turn("hello"))
        with caplog.at_level(logging.WARNING, "media.stt.openai"):
            assert await stream.end_of_turn_async() is None
        server.status, server.api_key = None, KEY  # the next turn works again
        feed(stream, turn("hello"))
        assert await stream.end_of_turn_async() == Transcript("hello", True)
        stream.close()
        await stt.aclose()
    assert f"speech recognition at {server.url}: {logged}; this turn has no transcript" in \
        caplog.text


async def test_an_unreachable_server_is_a_warning(caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stt = OpenAISTT(api_key=KEY, base_url=f"http://127.0.0.1:{port}/v1", timeout=2.0)
    stream = stt.new_stream()
    feed(stream, turn("hello"))
    with caplog.at_level(logging.WARNING, "media.stt.openai"):
        assert await stream.end_of_turn_async() is None
    assert "failed: APIConnectionError" in caplog.text
    await stt.aclose()


async def test_closing_the_stream_cancels_a_request_in_flight_and_refuses_audio():
    async with transcribe_server(api_key=KEY, fixed_transcript="hello") as server:
        server.hold = True
        stt = OpenAISTT(api_key=KEY, base_url=server.url)
        stream = stt.new_stream()
        feed(stream, turn("hello"))
        pending = stream.end_of_turn_async()
        await asyncio.sleep(0.2)
        stream.close()  # the caller hung up
        with pytest.raises(asyncio.CancelledError):
            await pending
        with pytest.raises(RuntimeError, match="closed"):
            stream.feed(np.zeros(320, np.int16))
        await stt.aclose()


async def test_a_turn_longer_than_max_s_is_cut_with_one_warning(caplog):
    async with transcribe_server(api_key=KEY, fixed_transcript="long") as server:
        stt = OpenAISTT(api_key=KEY, base_url=server.url, max_s=1.0)
        stream = stt.new_stream()
        with caplog.at_level(logging.WARNING, "media.stt.openai"):
            feed(stream, np.full(3 * 16000, 1000, np.int16))
        assert await stream.end_of_turn_async() == Transcript("long", True)
        stream.close()
        await stt.aclose()
    assert len(server.requests[0]["audio"]) == 16000
    assert caplog.text.count("longer than 1 s") == 1


def test_a_missing_key_is_named_at_start_up(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(RuntimeError, match="OpenAI speech recognition needs a key: set "
                                           "OPENAI_API_KEY"):
        OpenAISTT().check()
    OpenAISTT(base_url="http://127.0.0.1:1/v1").check()
