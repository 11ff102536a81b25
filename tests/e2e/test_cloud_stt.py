"""The real command line with the cloud recogniser: `atoms-gateway serve` in a subprocess with
ATOMS_STT=deepgram and ATOMS_STT_URL pointing at a local server that speaks Deepgram's live
protocol (pocketsphinx with the demo phrases behind it). A Twilio caller waits out the
greeting, asks "what time is it" and hears the demo agent tell the time."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.e2e.harness import HOST, demo_phrases, rms_dbfs, utterance, wait_quiet
from tests.kit.clients import TwilioClient
from tests.kit.serve_process import CLI, serve_fails, serving
from tests.kit.servers.deepgram_server import DeepgramServer

QUESTION = "what time is it"


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_twilio_caller_is_understood_through_the_deepgram_protocol(tmp_path):
    record_dir = tmp_path / "calls"
    async with DeepgramServer(phrases=demo_phrases()) as dg:
        env = {"ATOMS_STT": "deepgram", "ATOMS_STT_URL": dg.url, "DEEPGRAM_API_KEY": dg.api_key}
        async with serving(tmp_path / "serve.log", "--record-dir", str(record_dir),
                           env=env) as port:
            client = TwilioClient(HOST, port)
            await client.connect()
            await client.start()
            client.start_mic()
            await wait_quiet(client)  # the whole greeting
            assert not dg.connections  # a silent caller opens no recogniser socket
            t_spoken = await client.say(utterance(QUESTION, client.rate))
            await dg.wait_for(lambda: any(c.finals for c in dg.connections), timeout=10)
            await client.wait_audio(1.0, after=t_spoken, timeout=15)
            reply = np.concatenate([f.pcm for f in client.agent_frames if f.t >= t_spoken])
            await client.hangup_and_wait()
            await client.close()
            assert not client.problems

    [conn] = dg.connections  # one utterance, one socket
    assert conn.authorization == f"Token {dg.api_key}"
    assert (conn.param("encoding"), conn.param("sample_rate")) == ("linear16", "16000")
    assert conn.controls == ["Finalize", "CloseStream"]
    assert [f["channel"]["alternatives"][0]["transcript"] for f in conn.finals] == [
        "What time is it."]

    [timeline] = record_dir.glob("*.json")
    events = json.loads(timeline.read_text())["events"]
    assert [e["text"] for e in events if e["type"] == "turn.end"] == ["What time is it."]
    said = "".join(e.get("text", "") for e in events
                   if e["type"] == "agent.llm.response.chunk")
    assert said.startswith("It is "), said
    assert rms_dbfs(reply) > -35  # the reply reached the caller as audio


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_serve_without_a_deepgram_key_stops_at_start_up():
    env = {k: v for k, v in os.environ.items()
           if k not in ("DEEPGRAM_API_KEY", "ATOMS_DEEPGRAM_API_KEY", "ATOMS_STT_URL")}
    code, err = await serve_fails("--stt", "deepgram", env=env, timeout=30)
    assert code == 1
    assert err.strip().endswith(
        "needs an API key: set DEEPGRAM_API_KEY (or ATOMS_DEEPGRAM_API_KEY), or pass api_key=")


async def ask_the_time(tmp_path, env: dict[str, str], untouched) -> str:
    """A Twilio caller waits out the greeting (`untouched()`: the recogniser's server has
    seen nothing yet), asks the time and hears the demo agent's reply. Returns the
    gateway's log."""
    record_dir = tmp_path / "calls"
    log = tmp_path / "serve.log"
    async with serving(log, "--record-dir", str(record_dir), env=env) as port:
        client = TwilioClient(HOST, port)
        await client.connect()
        await client.start()
        client.start_mic()
        await wait_quiet(client)  # the whole greeting
        assert untouched()  # a silent caller costs the recogniser nothing
        t_spoken = await client.say(utterance(QUESTION, client.rate))
        await client.wait_audio(1.0, after=t_spoken, timeout=15)
        reply = np.concatenate([f.pcm for f in client.agent_frames if f.t >= t_spoken])
        await client.hangup_and_wait()
        await client.close()
        assert not client.problems
    assert rms_dbfs(reply) > -35  # the reply reached the caller as audio
    [timeline] = record_dir.glob("*.json")
    events = json.loads(timeline.read_text())["events"]
    assert [e["text"] for e in events if e["type"] == "turn.end"] == [QUESTION]
    said = "".join(e.get("text", "") for e in events
                   if e["type"] == "agent.llm.response.chunk")
    assert said.startswith("It is "), said
    return log.read_text()


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_twilio_caller_is_understood_through_openai_transcriptions(tmp_path):
    from tests.kit.servers.openai_transcribe_server import transcribe_server

    async with transcribe_server(api_key="sk-test", phrases=demo_phrases()) as server:
        env = {"ATOMS_STT": "openai", "ATOMS_STT_URL": server.url, "OPENAI_API_KEY": "sk-test",
               "ATOMS_STT_MODEL": "whisper-1"}
        log = await ask_the_time(tmp_path, env, lambda: not server.requests)
    assert f"speech recognition: openai (model whisper-1, at {server.url})" in log
    [req] = server.requests  # one turn, one request
    assert (req["model"], req["language"]) == ("whisper-1", "en")
    assert "what time is it" in req["prompt"]  # the demo's phrases favour its words
    assert 1.0 < len(req["audio"]) / 16000 < 4.0  # the turn's audio, pre-roll included


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_serve_without_an_openai_key_for_speech_recognition_stops_at_start_up():
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ATOMS_STT_URL")}
    code, err = await serve_fails("--stt", "openai", env=env, timeout=30)
    assert code == 1
    assert err.strip().endswith(
        "atoms-gateway serve: OpenAI speech recognition needs a key: set OPENAI_API_KEY "
        "(or ATOMS_STT_URL for a compatible server that needs none)"), err[-1000:]


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_twilio_caller_is_understood_through_smallest_pulse(tmp_path):
    from tests.kit.servers.pulse_server import pulse_server

    async with pulse_server(api_key="sk_test", phrases=demo_phrases()) as server:
        env = {"ATOMS_STT": "pulse", "ATOMS_STT_URL": server.url, "SMALLEST_API_KEY": "sk_test"}
        log = await ask_the_time(tmp_path, env, lambda: not server.connections)
    assert f"speech recognition: pulse (at {server.url})" in log
    [conn] = server.connections  # one utterance, one socket
    assert conn.authorization == "Bearer sk_test"
    assert conn.texts == ['{"type": "finalize"}']


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_serve_without_a_smallest_key_for_pulse_stops_at_start_up():
    env = {k: v for k, v in os.environ.items() if k != "SMALLEST_API_KEY"}
    code, err = await serve_fails("--stt", "pulse", env=env, timeout=30)
    assert code == 1
    assert err.strip().endswith("atoms-gateway serve: Smallest Pulse speech recognition needs "
                                "a key: set SMALLEST_API_KEY"), err[-1000:]
