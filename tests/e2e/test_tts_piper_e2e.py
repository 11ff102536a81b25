"""The real command line with the piper voice: `atoms-gateway serve` in a subprocess with
ATOMS_TTS=piper answers a Twilio caller, whose 8 kHz mu-law audio of the greeting is
recognised by pocketsphinx as the demo's greeting; and bad engine settings stop the server
at start-up with one clear line."""

from __future__ import annotations

import os

import numpy as np
import pytest

from gateway.demo import GREETING, STORY, canned_reply
from media.frames import split_frames
from media.resample import StreamResampler
from media.stt.pocketsphinx import PocketSphinxSTT
from media.tts import synthesize_all
from media.tts.piper import PiperTTS
from tests.e2e.harness import HOST, rms_dbfs, upsample, wait_quiet
from tests.kit.clients import TwilioClient
from tests.kit.serve_process import CLI, serve_fails, serving

needs_cli = pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed")


def phone_line(pcm16k: np.ndarray) -> np.ndarray:
    """16 kHz audio as a caller's phone gives it back: 8 kHz, then up to 16 kHz again."""
    down = StreamResampler(16000, 8000)
    narrow = np.concatenate((down.process(pcm16k), down.flush()))
    return upsample(narrow)


async def recognise_greeting(heard: np.ndarray) -> str | None:
    """What pocketsphinx makes of `heard` (16 kHz) with the demo's sentences as its grammar.

    A piper sentence over the same 8 kHz line goes first and is ignored: a recogniser's
    noise normalisation starts far from piper's voice (tests/media/test_tts_piper.py)."""
    choices = [GREETING, STORY, *(canned_reply(p) or "" for p in
                                  ("goodbye", "operator", "hello", "thank you"))]
    primer = phone_line(await synthesize_all(PiperTTS(), "Good morning, this is a test."))
    stream = PocketSphinxSTT(phrases=choices).new_stream()
    try:
        finals = []
        for pcm in (primer, heard):
            for frame in split_frames(np.concatenate((np.zeros(3200, np.int16), pcm))):
                stream.feed(frame)
            final = stream.end_of_turn()
            finals.append(final.text if final else None)
    finally:
        stream.close()
    return finals[1]


@needs_cli
async def test_serve_with_piper_greets_a_twilio_caller_in_the_piper_voice(tmp_path):
    log = tmp_path / "serve.log"
    async with serving(log, env={"ATOMS_TTS": "piper", "ATOMS_TTS_VOICE": None}) as port:
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
    assert "text-to-speech: piper" in text
    assert "piper voice en_US-joe-medium.onnx loaded (22050 Hz)" in text
    assert rms_dbfs(greeting) > -35
    assert 7 < len(greeting) / 8000 < 16  # piper says it in about 10 s
    assert await recognise_greeting(upsample(greeting)) == GREETING


@needs_cli
@pytest.mark.parametrize(("args", "env", "message"), [
    (["--tts", "piper"], {"ATOMS_TTS_VOICE": "/nonexistent/voice.onnx"},
     "atoms-gateway serve: piper voice model not found: /nonexistent/voice.onnx"),
    ([], {"ATOMS_TTS": "festival"},  # the variable is named
     "atoms-gateway serve: ATOMS_TTS='festival': unknown engine: "
     "use espeak, piper, openai or waves"),
])
async def test_bad_speech_synthesiser_settings_stop_at_start_up(args, env, message):
    code, err = await serve_fails(*args, env={**os.environ, **env})
    assert code == 1
    assert err.strip().endswith(message), err[-1000:]
