"""DeepgramSTT against a local server speaking Deepgram's live protocol over real sockets:
espeak-ng speech fed in 20 ms frames as the voice loop feeds it, recognised by pocketsphinx
on the server side; faults (closes, a vanished server, a bad key) and the protocol details
(batching, KeepAlive, Finalize/CloseStream, close codes) checked on both ends."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import numpy as np
import pytest

from gateway.demo import PHRASES
from media.frames import split_frames
from media.stt import AsyncEndOfTurn, Transcript
from media.stt.deepgram import DEEPGRAM_URL, DeepgramStream, DeepgramSTT
from tests.kit.servers.deepgram_server import DeepgramServer
from tests.kit.speech import needs_espeak, speech

pytestmark = needs_espeak

GAP = np.zeros(4800, dtype=np.int16)  # 300 ms of silence, as the voice loop's preroll gives
SILENCE = np.zeros(320, dtype=np.int16)
LOGGER = "media.stt.deepgram"


def utterance(text: str) -> np.ndarray:
    return np.concatenate((GAP, speech(text), GAP))


async def speak(stream: DeepgramStream, text: str) -> list[Transcript]:
    """Feed one utterance frame by frame, letting the loop run between frames."""
    partials: list[Transcript] = []
    for frame in split_frames(utterance(text)):
        partials.extend(stream.feed(frame))
        await asyncio.sleep(0)
    return partials


@pytest.fixture
async def dg() -> AsyncIterator[DeepgramServer]:
    async with DeepgramServer(phrases=PHRASES) as server:
        yield server


@pytest.fixture
async def stt(dg: DeepgramServer) -> AsyncIterator[DeepgramSTT]:
    engine = DeepgramSTT(api_key=dg.api_key, url=dg.url)
    yield engine
    await engine.aclose()


async def test_speech_gives_the_final_transcript_and_interim_partials(dg, stt):
    stream = stt.new_stream()
    assert isinstance(stream, AsyncEndOfTurn)
    partials = await speak(stream, "what time is it")
    for _ in range(200):  # interim results reach feed() as the loop keeps feeding
        if partials:
            break
        await asyncio.sleep(0.01)
        partials.extend(stream.feed(SILENCE))
    final = await stream.end_of_turn_async()
    stream.close()

    assert final == Transcript("What time is it.", True)
    assert partials and all(not p.is_final for p in partials)
    assert all(set(p.text.split()) <= {"what", "time", "is", "it"} for p in partials)
    [conn] = dg.connections
    assert conn.authorization == f"Token {dg.api_key}"
    assert {k: conn.param(k) for k in ("encoding", "sample_rate", "channels", "model",
                                       "language", "interim_results", "punctuate")} == {
        "encoding": "linear16", "sample_rate": "16000", "channels": "1", "model": "nova-3",
        "language": "en", "interim_results": "true", "punctuate": "true"}
    assert conn.controls == ["Finalize", "CloseStream"]
    assert conn.finals[0]["from_finalize"] is True
    await dg.wait_for(conn.closed.is_set)
    assert conn.close_code == 1000


async def test_two_turns_in_a_row_use_one_socket_each(dg, stt):
    stream = stt.new_stream()
    results = []
    for text in ("tell me a story", "goodbye"):
        await speak(stream, text)
        results.append(await stream.end_of_turn_async())
    stream.close()
    assert [r.text if r else None for r in results] == ["Tell me a story.", "Goodbye."]
    assert len(dg.connections) == 2


async def test_a_turn_ended_while_the_previous_final_is_pending_keeps_order(dg):
    stt = DeepgramSTT(api_key=dg.api_key, url=dg.url, final_timeout=30)
    stream = stt.new_stream()
    hold = dg.hold_next_final()
    await speak(stream, "what time is it")
    first = stream.end_of_turn_async()  # the server holds this one's final
    await speak(stream, "goodbye")  # frames after the call belong to the next turn
    second = stream.end_of_turn_async()

    assert await second == Transcript("Goodbye.", True)
    assert not first.done()
    hold.set()
    assert await first == Transcript("What time is it.", True)
    stream.close()
    await stt.aclose()
    assert [c.finals[0]["channel"]["alternatives"][0]["transcript"] for c in dg.connections] == [
        "What time is it.", "Goodbye."]


@pytest.mark.parametrize("fault", ["close", "vanish"])
async def test_server_failing_mid_utterance_gives_none_and_the_next_turn_works(
        dg, stt, caplog, fault):
    if fault == "close":
        dg.close_next(after_bytes=6400, code=1011, reason="NET-0000")
    else:
        dg.vanish_next(after_bytes=6400)
    stream = stt.new_stream()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        await speak(stream, "what time is it")
        assert await stream.end_of_turn_async() is None
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(lines) == 1 and "utterance 1" in lines[0] and "no transcript" in lines[0]
    if fault == "close":
        assert "code 1011 NET-0000" in lines[0]
    else:
        assert "went away without closing" in lines[0] or "lost while sending" in lines[0]

    await speak(stream, "goodbye")
    assert await stream.end_of_turn_async() == Transcript("Goodbye.", True)
    stream.close()


async def test_bad_key_gives_none_and_a_clear_error(dg, caplog):
    stt = DeepgramSTT(api_key="not-the-key", url=dg.url)
    stt.check()  # a key is present; only the service can tell it is wrong
    stream = stt.new_stream()
    with caplog.at_level(logging.ERROR, logger=LOGGER):
        await speak(stream, "hello")
        assert await stream.end_of_turn_async() is None
    stream.close()
    await stt.aclose()
    assert dg.refused == [401] and not dg.connections
    [line] = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "rejected the API key (HTTP 401: Invalid credentials.)" in line


async def test_unreachable_server_gives_none(caplog):
    server = DeepgramServer(fixed_transcript="x")
    url = await server.start()
    await server.stop()  # nothing listens there now
    stt = DeepgramSTT(api_key="k", url=url)
    stream = stt.new_stream()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        stream.feed(speech("hello")[:320])
        assert await stream.end_of_turn_async() is None
    stream.close()
    await stt.aclose()
    assert any("cannot connect" in r.getMessage() for r in caplog.records)


def test_check_names_the_missing_key(monkeypatch):
    monkeypatch.delenv("DEEPGRAM_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="DEEPGRAM_API_KEY"):
        DeepgramSTT(url=DEEPGRAM_URL).check()
    DeepgramSTT(url="ws://127.0.0.1:9/v1/listen").check()  # a local server needs no key
    with pytest.raises(RuntimeError, match="ws:// or wss://"):
        DeepgramSTT(api_key="k", url="http://example.com/v1/listen").check()
    monkeypatch.setenv("DEEPGRAM_API_KEY", "from-env")
    engine = DeepgramSTT()
    engine.check()
    assert engine.headers() == {"Authorization": "Token from-env"}


async def test_audio_goes_in_100_ms_messages(dg, stt):
    stream = stt.new_stream()
    pcm = utterance("operator")
    frames = split_frames(pcm)
    await speak(stream, "operator")
    assert await stream.end_of_turn_async() == Transcript("Operator.", True)
    stream.close()
    sizes = dg.connections[0].audio_sizes
    assert sum(sizes) == len(frames) * 640
    assert all(size == 3200 for size in sizes[:-1]) and 0 < sizes[-1] <= 3200
    assert len(sizes) == -(-len(frames) // 5)  # five 20 ms frames per message


async def test_keepalive_holds_an_idle_socket(dg):
    stt = DeepgramSTT(api_key=dg.api_key, url=dg.url, keepalive_s=0.05)
    stream = stt.new_stream()
    stream.feed(SILENCE)  # less than a batch: nothing to send yet
    await dg.wait_for(lambda: dg.connections and "KeepAlive" in dg.connections[0].controls)
    assert await stream.end_of_turn_async() is None  # silence: no words
    stream.close()
    await stt.aclose()
    conn = dg.connections[0]
    assert conn.audio_sizes == [640] and conn.controls[-2:] == ["Finalize", "CloseStream"]


async def test_sync_end_of_turn_ends_the_turn_and_finalizes_in_the_background(dg, stt):
    stream = stt.new_stream()
    await speak(stream, "hello")
    assert stream.end_of_turn() is None  # nothing was final yet: the text comes later
    await speak(stream, "goodbye")  # the next turn, on a socket of its own
    assert await stream.end_of_turn_async() == Transcript("Goodbye.", True)
    await dg.wait_for(lambda: len(dg.connections) == 2 and dg.connections[0].finals)
    stream.close()
    assert dg.connections[0].finals[0]["channel"]["alternatives"][0]["transcript"] == "Hello."


async def test_close_cancels_the_utterance_and_its_socket(dg, stt):
    stream = stt.new_stream()
    await speak(stream, "hello")
    [conn] = await dg.wait_for(lambda: dg.connections)
    stream.close()
    await asyncio.wait_for(conn.closed.wait(), 5)
    assert "Finalize" not in conn.controls
    with pytest.raises(RuntimeError, match="closed"):
        stream.feed(SILENCE)


async def test_fixed_transcript_mode_answers_speech_only():
    async with DeepgramServer(fixed_transcript="what time is it") as dg:
        stt = DeepgramSTT(api_key=dg.api_key, url=dg.url, punctuate=False)
        stream = stt.new_stream()
        await speak(stream, "tell me a story")
        spoken = await stream.end_of_turn_async()
        for _ in range(40):
            stream.feed(SILENCE)
        silent = await stream.end_of_turn_async()
        stream.close()
        await stt.aclose()
    assert spoken == Transcript("what time is it", True)
    assert silent is None


# -- the local server itself: the protocol's refusals and close codes ---------------------


async def _connect(dg: DeepgramServer, http: aiohttp.ClientSession, query: str = "",
                   key: str | None = None) -> aiohttp.ClientWebSocketResponse:
    return await http.ws_connect(
        f"{dg.url}?encoding=linear16&sample_rate=16000{query}",
        headers={"Authorization": f"Token {key or dg.api_key}"})


async def test_server_refuses_a_bad_handshake():
    async with DeepgramServer(fixed_transcript="x") as dg, aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as no_key:
            await http.ws_connect(dg.url)
        for query in ("&channels=2", "&interim_results=maybe", "&endpointing=soon"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as bad:
                await _connect(dg, http, query)
            assert bad.value.status == 400 and bad.value.headers.get("dg-error")
        with pytest.raises(aiohttp.WSServerHandshakeError) as no_rate:
            await http.ws_connect(f"{dg.url}?encoding=linear16",
                                  headers={"Authorization": f"Token {dg.api_key}"})
    assert no_key.value.status == 401
    assert no_key.value.headers["dg-error"] == "Invalid credentials."
    assert no_rate.value.status == 400
    assert dg.refused == [401, 400, 400, 400, 400]


@pytest.mark.parametrize("send, code, reason", [
    (b"\x01\x02\x03", 1008, "DATA-0000"),  # not whole 16-bit samples
    ('{"type": "Transcribe"}', 1008, "invalid control message"),
    ("not json", 1008, "invalid control message"),
    (None, 1011, "NET-0001"),  # nothing at all within the idle timeout
])
async def test_server_closes_on_bad_input(send, code, reason):
    async with DeepgramServer(fixed_transcript="x", idle_timeout=0.2) as dg, \
            aiohttp.ClientSession() as http:
        ws = await _connect(dg, http)
        if isinstance(send, bytes):
            await ws.send_bytes(send)
        elif send is not None:
            await ws.send_str(send)
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert (ws.close_code, msg.extra) == (code, reason)


async def test_server_finalize_and_close_stream():
    async with DeepgramServer(fixed_transcript="hello there") as dg, \
            aiohttp.ClientSession() as http:
        ws = await _connect(dg, http, "&interim_results=false&punctuate=false")
        await ws.send_str(json.dumps({"type": "Finalize"}))  # no audio yet: no answer
        await ws.send_str(json.dumps({"type": "KeepAlive"}))
        await ws.send_bytes(utterance("hello").astype("<i2").tobytes())
        await ws.send_str(json.dumps({"type": "Finalize"}))
        first = json.loads((await ws.receive()).data)
        await ws.send_bytes(GAP.astype("<i2").tobytes())  # silence, then close
        await ws.send_str(json.dumps({"type": "CloseStream"}))
        second = json.loads((await ws.receive()).data)
        meta = json.loads((await ws.receive()).data)
        closing = await ws.receive()
    assert first["type"] == "Results" and first["is_final"] and first["from_finalize"]
    assert first["channel"]["alternatives"][0]["transcript"] == "hello there"
    assert second["is_final"] and not second["from_finalize"]
    assert second["channel"]["alternatives"][0]["transcript"] == ""
    assert second["start"] == pytest.approx(first["start"] + first["duration"])
    assert meta["type"] == "Metadata" and meta["duration"] > 1.0
    assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 1000
    assert dg.connections[0].controls == ["Finalize", "KeepAlive", "Finalize", "CloseStream"]
