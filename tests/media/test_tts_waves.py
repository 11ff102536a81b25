"""WavesTTS against a local server speaking Smallest AI's Waves streaming TTS WebSocket
(tests/kit/servers/waves_server.py: espeak-ng speech). The server is checked against the published
SDK's own client (`smallestai` 4.4.0 `WavesStreamingTTS`): both get the same audio. Then
the engine: 16 kHz audio exactly as spoken, piece by piece; connections reused across
sentences, a dropped idle one replaced; a sentence cut short closes its connection;
errors are clear RuntimeErrors."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest

from media.tts import synthesize_all
from media.tts.waves import DEFAULT_VOICE, WavesTTS
from tests.kit.servers.waves_server import waves_server
from tests.kit.speech import needs_espeak, speech

pytestmark = needs_espeak

TEXT = "Your order has shipped and will arrive on Monday."
KEY = "sk_test_waves"


async def test_the_local_server_speaks_the_protocol_as_the_published_sdk_reads_it():
    from smallestai.waves import TTSConfig, WavesStreamingTTS

    async with waves_server(api_key=KEY) as server:
        sdk = WavesStreamingTTS(TTSConfig(voice_id="magnus", api_key=KEY, sample_rate=16000))
        sdk.ws_url = server.url  # the SDK's own client, pointed at the local server
        theirs = b"".join(await asyncio.to_thread(lambda: list(sdk.synthesize(TEXT))))
        tts = WavesTTS(voice="magnus", api_key=KEY, url=server.url)
        ours = await synthesize_all(tts, TEXT)
        await tts.aclose()
    assert len(theirs) > 32000  # over a second of 16 kHz audio
    assert ours.astype("<i2").tobytes() == theirs
    assert server.requests[0]["voice_id"] == server.requests[1]["voice_id"] == "magnus"


async def test_speech_arrives_at_16_khz_exactly_as_spoken_in_pieces():
    async with waves_server(api_key=KEY) as server:
        tts = WavesTTS(api_key=KEY, url=server.url, speed=1.1)
        tts.check()
        stream = tts.synthesize(TEXT)
        chunks = [chunk async for chunk in stream]
        await tts.aclose()
    assert server.requests == [{"voice_id": DEFAULT_VOICE, "text": TEXT, "language": "en",
                                "sample_rate": 16000, "speed": 1.1, "max_buffer_flush_ms": 0,
                                "continue": False, "flush": False}]
    assert all(c.dtype == np.int16 for c in chunks)
    assert [len(c) for c in chunks[:-1]] == [1600] * (len(chunks) - 1)  # 100 ms pieces
    assert np.array_equal(np.concatenate(chunks), speech(TEXT, rate=16000))


async def test_connections_are_reused_across_sentences_and_a_dropped_one_replaced():
    async with waves_server(api_key=KEY) as server:
        tts = WavesTTS(api_key=KEY, url=server.url)
        for text in ("One.", "Two.", "Three."):
            assert len(await synthesize_all(tts, text)) > 1600
        assert (tts.connects, server.connections) == (1, 1)
        both = await asyncio.gather(synthesize_all(tts, "Four."), synthesize_all(tts, "Five."))
        assert all(len(a) > 1600 for a in both)
        assert tts.connects == 2  # two at once need two connections; both go back
        await server.drop_idle()  # the server closes idle sockets
        await asyncio.sleep(0.1)
        assert len(await synthesize_all(tts, "Six.")) > 1600  # no error: a fresh connection
        assert tts.connects == 3
        await tts.aclose()
    assert server.completed == 6


async def test_a_sentence_cut_short_closes_its_connection_and_the_next_one_plays():
    async with waves_server(api_key=KEY) as server:
        server.stall_after = 2
        tts = WavesTTS(api_key=KEY, url=server.url)
        stream = tts.synthesize(TEXT)
        first = await asyncio.wait_for(anext(stream), 5)
        assert len(first) == 1600
        await stream.aclose()  # barge-in: returns at once, the close goes on behind it
        await asyncio.wait_for(server.disconnected.wait(), 5)
        server.stall_after = None
        server.release()
        assert np.array_equal(await synthesize_all(tts, "Next."), speech("Next.", rate=16000))
        assert tts.connects == 2  # the cut connection was not reused
        await tts.aclose()


@pytest.mark.parametrize(("setup", "message"), [
    (lambda s: setattr(s, "error", "voice not found"), "voice not found"),
    (lambda s: setattr(s, "cut_after", 3), "connection lost"),
    (lambda s: setattr(s, "api_key", "another"), "refused: HTTP 401 (check SMALLEST_API_KEY)"),
])
async def test_server_failures_are_runtime_errors_naming_the_server(setup, message):
    async with waves_server(api_key=KEY) as server:
        setup(server)
        tts = WavesTTS(api_key=KEY, url=server.url)
        with pytest.raises(RuntimeError, match=f"text-to-speech at {server.url}: ") as info:
            await synthesize_all(tts, TEXT)
        assert message in str(info.value)
        await tts.aclose()


async def test_an_unreachable_server_and_a_missing_key_are_clear(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    tts = WavesTTS(api_key=KEY, url=f"ws://127.0.0.1:{port}/x")
    with pytest.raises(RuntimeError, match="cannot connect"):
        await synthesize_all(tts, TEXT)
    await tts.aclose()
    monkeypatch.delenv("SMALLEST_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="Smallest Waves text-to-speech needs a key: set "
                                           "SMALLEST_API_KEY"):
        WavesTTS().check()
    monkeypatch.setenv("SMALLEST_API_KEY", "sk_env")
    WavesTTS().check()
