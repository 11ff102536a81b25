"""PulseSTT against a local server speaking Smallest AI's Pulse streaming STT WebSocket
(tests/kit/servers/pulse_server.py: pocketsphinx with the demo's phrases). The server is checked
against the published SDK's own client first (`smallestai` 4.4.0
`waves.pulse_stt_streaming`); then the engine: a turn's audio goes up in 100 ms batches,
interim results become partials, the finalize gives the turn's words; failures give a
turn without a transcript and a log line."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest

from gateway.demo import PHRASES
from media.frames import split_frames
from media.stt import Transcript
from media.stt.pulse import PulseSTT
from tests.kit.servers.pulse_server import pulse_server
from tests.kit.speech import needs_espeak, speech

pytestmark = needs_espeak

KEY = "sk_test_pulse"
LOGGER = "media.stt.pulse"
GAP = np.zeros(4800, np.int16)


def turn(text: str) -> np.ndarray:
    return np.concatenate((GAP, speech(text), GAP))


async def speak(stream, pcm: np.ndarray) -> list[Transcript]:
    partials = []
    for frame in split_frames(pcm):
        partials += stream.feed(frame)
        await asyncio.sleep(0)
    return partials


async def test_the_local_server_speaks_the_protocol_as_the_published_sdk_reads_it():
    from smallestai import AsyncSmallestAI
    from smallestai.environment import SmallestAIEnvironment
    from smallestai.waves.pulse_stt_streaming.types.pulse_end_signal_message import (
        PulseEndSignalMessage,
    )

    async with pulse_server(api_key=KEY, phrases=PHRASES) as server:
        env = SmallestAIEnvironment(atoms="http://127.0.0.1:1", waves=f"http://127.0.0.1:"
                                    f"{server.port}", waves_ws=f"ws://127.0.0.1:{server.port}")
        client = AsyncSmallestAI(environment=env, token=KEY)
        options = {"additional_query_parameters": {"language": "en", "encoding": "linear16",
                                                   "sample_rate": "16000"}}
        async with client.waves.pulse_stt_streaming.connect(
                authorization=f"Bearer {KEY}", request_options=options) as socket:
            pcm = turn("what time is it").astype("<i2").tobytes()
            for i in range(0, len(pcm), 3200):
                await socket.transcribe_streaming_pulse_send_audio(pcm[i:i + 3200])
            await socket.transcribe_streaming_pulse_send_end_signal(
                PulseEndSignalMessage(type="finalize"))
            replies = [reply async for reply in socket]
    final = replies[-1]
    assert (final.is_final, final.is_last, final.transcript) == (True, True, "what time is it")
    assert all(r.session_id == final.session_id for r in replies)


async def test_a_turn_goes_up_in_batches_and_its_words_come_back_with_partials():
    async with pulse_server(api_key=KEY, phrases=PHRASES) as server:
        stt = PulseSTT(api_key=KEY, url=server.url)
        stt.check()
        stream = stt.new_stream()
        pcm = turn("what time is it")
        partials = await speak(stream, pcm)
        assert await stream.end_of_turn_async() == Transcript("what time is it", True)
        stream.close()
        await stt.aclose()
    [conn] = server.connections
    assert conn.authorization == f"Bearer {KEY}"
    assert conn.query == {"language": "en", "encoding": "linear16", "sample_rate": "16000"}
    assert bytes(conn.audio) == np.concatenate(split_frames(pcm)).astype("<i2").tobytes()
    assert [json.loads(t) for t in conn.texts] == [{"type": "finalize"}]
    assert partials and all(not p.is_final for p in partials)
    assert "what time is it".startswith(partials[0].text.split()[0])


async def test_a_silent_caller_opens_nothing_and_each_turn_has_its_own_socket():
    async with pulse_server(api_key=KEY, phrases=PHRASES) as server:
        stt = PulseSTT(api_key=KEY, url=server.url)
        stream = stt.new_stream()
        assert await stream.end_of_turn_async() is None
        await asyncio.sleep(0.1)
        assert server.connections == []
        for text in ("goodbye", "operator"):
            await speak(stream, turn(text))
            assert await stream.end_of_turn_async() == Transcript(text, True)
        stream.close()
        await stt.aclose()
    assert len(server.connections) == 2


async def test_a_refused_key_a_vanished_server_and_a_late_final_are_logged(caplog):
    async with pulse_server(api_key=KEY, phrases=PHRASES) as server:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            bad = PulseSTT(api_key="wrong", url=server.url)
            stream = bad.new_stream()
            await speak(stream, turn("hello"))
            assert await stream.end_of_turn_async() is None
            await bad.aclose()

            stt = PulseSTT(api_key=KEY, url=server.url, final_timeout=0.5)
            stream = stt.new_stream()
            server.vanish_next = True
            await speak(stream, turn("hello"))
            assert await stream.end_of_turn_async() is None

            server.hold_final = True
            await speak(stream, turn("hello"))
            assert await stream.end_of_turn_async() is None  # nothing final by then
            server.release()
            server.hold_final = False
            await speak(stream, turn("goodbye"))  # and the call goes on
            assert await stream.end_of_turn_async() == Transcript("goodbye", True)
            stream.close()
            await stt.aclose()
    lines = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert "pulse: utterance 1: Smallest Pulse rejected the API key (HTTP 401); check " \
           "SMALLEST_API_KEY; this turn has no transcript" in lines
    assert any("went away without closing the connection" in line or "lost while sending" in
               line for line in lines), lines  # (which of the two: the race of the abort)
    assert any("no final result within 0.5 s; using nothing" in line for line in lines), lines


def test_check_names_what_is_missing(monkeypatch):
    monkeypatch.delenv("SMALLEST_API_KEY", raising=False)
    with pytest.raises(RuntimeError, match="Smallest Pulse speech recognition needs a key: "
                                           "set SMALLEST_API_KEY"):
        PulseSTT().check()
    with pytest.raises(RuntimeError, match="ws:// or wss://"):
        PulseSTT(api_key="k", url="http://example.com/x").check()
    monkeypatch.setenv("SMALLEST_API_KEY", "sk_env")
    assert PulseSTT().headers() == {"Authorization": "Bearer sk_env"}
