"""The real command line with the cloud synthesisers: `atoms-gateway serve` in a subprocess
with ATOMS_TTS=openai or waves and ATOMS_TTS_URL pointing at a local server that speaks
OpenAI's `/v1/audio/speech` or Smallest AI's Waves streaming WebSocket (espeak-ng behind
both). A Twilio caller hears the demo's greeting in that server's audio, one request per
sentence, and talking over the story stops the request in flight; a missing key stops
the server at start-up with one clear line."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from gateway.demo import GREETING, STORY, canned_reply
from media.frames import split_frames
from media.stt.pocketsphinx import PocketSphinxSTT
from tests.e2e.harness import HOST, rms_dbfs, upsample, utterance, wait_quiet
from tests.kit.clients import TwilioClient
from tests.kit.serve_process import CLI, serve_fails, serving
from tests.kit.servers.openai_speech_server import speech_server
from tests.kit.servers.waves_server import waves_server

needs_cli = pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed")
KEY = "sk-test-key"


class Engine:
    """How to run one cloud synthesiser's local server and point the gateway at it."""

    def __init__(self, name: str, server: Callable[..., Any], key_var: str, text_field: str,
                 voice_field: str, voice: str, described: str) -> None:
        self.name, self.server, self.key_var = name, server, key_var
        self.text_field, self.voice_field = text_field, voice_field
        self.voice, self.described = voice, described

    def env(self, url: str, voice: str | None) -> dict[str, str | None]:
        return {"ATOMS_TTS": self.name, "ATOMS_TTS_URL": url, self.key_var: KEY,
                "ATOMS_TTS_VOICE": voice, "ATOMS_TTS_MODEL": None}


ENGINES = [
    Engine("openai", speech_server, "OPENAI_API_KEY", "input", "voice", "nova",
           "openai (voice nova, model gpt-4o-mini-tts, at {url})"),
    Engine("waves", waves_server, "SMALLEST_API_KEY", "text", "voice_id", "hazel",
           "waves (voice hazel, at {url})"),
]


def recognise(pcm16k: np.ndarray) -> str | None:
    """What pocketsphinx makes of `pcm16k` with the demo's sentences as its grammar."""
    choices = [GREETING, STORY, *(canned_reply(p) or "" for p in
                                  ("goodbye", "operator", "hello", "thank you"))]
    stream = PocketSphinxSTT(phrases=choices).new_stream()
    try:
        for frame in split_frames(np.concatenate((np.zeros(3200, np.int16), pcm16k))):
            stream.feed(frame)
        final = stream.end_of_turn()
    finally:
        stream.close()
    return final.text if final else None


async def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


@needs_cli
@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
async def test_serve_with_a_cloud_tts_greets_a_twilio_caller_in_its_audio(tmp_path, engine):
    log = tmp_path / "serve.log"
    async with engine.server(api_key=KEY, pace=4.0) as server:
        async with serving(log, env=engine.env(server.url, engine.voice)) as port:
            client = TwilioClient(HOST, port)
            await client.connect()
            await client.start()
            client.start_mic()
            await wait_quiet(client)  # the whole greeting
            greeting = np.concatenate([f.pcm for f in client.agent_frames])
            await client.hangup_and_wait()
            await client.close()
            assert not client.problems
    text = log.read_text(errors="replace")
    assert "text-to-speech: " + engine.described.format(url=server.url) in text
    assert " ".join(r[engine.text_field].strip() for r in server.requests) == GREETING
    assert {r[engine.voice_field] for r in server.requests} == {engine.voice}
    assert rms_dbfs(greeting) > -35
    assert recognise(upsample(greeting)) == GREETING


@needs_cli
@pytest.mark.parametrize("engine", ENGINES, ids=lambda e: e.name)
async def test_talking_over_the_story_drops_the_speech_request_in_flight(tmp_path, engine):
    log = tmp_path / "serve.log"
    async with engine.server(api_key=KEY, pace=1.0) as server:  # as slow as real time
        async with serving(log, env=engine.env(server.url, None)) as port:
            client = TwilioClient(HOST, port)
            await client.connect()
            await client.start()
            client.start_mic()
            await wait_quiet(client)
            server.disconnected.clear()
            asked = await client.say(utterance("tell me a story", client.rate))
            await client.wait_audio(3.0, after=asked, timeout=20)  # the story, in real time
            clears = sum(c.kind == "clear" for c in client.controls)  # (the greeting's)
            client.say(utterance("stop please, stop", client.rate))
            await wait_for(lambda: sum(c.kind == "clear" for c in client.controls) > clears)
            await asyncio.wait_for(server.disconnected.wait(), 10)
            await client.hangup_and_wait()
            await client.close()
    told = [r[engine.text_field].strip() for r in server.requests
            if r[engine.text_field].strip() in STORY]
    assert told and STORY.startswith(told[0])  # the story was being told ...
    assert len(" ".join(told)) < len(STORY) / 2  # ... and its synthesis stopped early on


@needs_cli
@pytest.mark.parametrize(("name", "message"), [
    ("openai", "OpenAI text-to-speech needs a key: set OPENAI_API_KEY (or ATOMS_TTS_URL for "
               "a compatible server that needs none)"),
    ("waves", "Smallest Waves text-to-speech needs a key: set SMALLEST_API_KEY"),
])
async def test_a_cloud_tts_without_a_key_stops_at_start_up(name, message):
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "SMALLEST_API_KEY", "ATOMS_TTS_URL")}
    code, err = await serve_fails("--tts", name, env=env)
    assert code == 1
    assert err.strip().endswith(f"atoms-gateway serve: {message}"), err[-1000:]
