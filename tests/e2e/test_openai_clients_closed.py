"""OpenAI-protocol clients are closed when what made them ends (issue 23): the app's speech
engines (`tts="openai"`, `stt="openai"`, one connection pool each per app) when the app
stops, and an agent's LLM client (`OpenAIClient`, one per session) when it ends. Left
open, each holds its keep-alive connections until the collector finds it, and then
closes them uncleanly ("unclosed transport" warnings). Every `openai.AsyncOpenAI` made
during a test is recorded; local OpenAI-protocol servers on 127.0.0.1 stand in for the
cloud."""

from __future__ import annotations

from typing import Any

import aiohttp
import openai
import pytest

from tests.e2e.canary import until
from tests.e2e.harness import HOST, demo_phrases, start_gateway, utterance
from tests.kit.clients import TwilioClient
from tests.kit.servers.openai_speech_server import speech_server
from tests.kit.servers.openai_transcribe_server import transcribe_server

KEY = "sk-test"


def record_clients(monkeypatch: pytest.MonkeyPatch) -> list[openai.AsyncOpenAI]:
    """Every `openai.AsyncOpenAI` made from now on (by the speech engines or by
    `agent.clients.openai.OpenAIClient`), in the order they were made."""
    made: list[openai.AsyncOpenAI] = []

    class Recorded(openai.AsyncOpenAI):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(openai, "AsyncOpenAI", Recorded)  # (media.openai_api's)
    monkeypatch.setattr("agent.clients.openai.AsyncOpenAI", Recorded)
    return made


async def close_all(clients: list[openai.AsyncOpenAI]) -> None:
    """(So that a failing test does not leave them open in turn.)"""
    for client in clients:
        await client.close()


async def test_the_apps_openai_speech_engines_are_closed_when_it_stops(monkeypatch):
    made = record_clients(monkeypatch)
    async with (speech_server(api_key=KEY) as speech,
                transcribe_server(api_key=KEY, phrases=demo_phrases()) as transcribe):
        gw = await start_gateway(record=False, tts="openai", tts_url=speech.url,
                                 tts_api_key=KEY, stt="openai", stt_url=transcribe.url,
                                 stt_api_key=KEY)
        try:
            client = TwilioClient(HOST, gw.port)
            await client.connect()
            await client.start()
            client.start_mic()
            await client.wait_audio(0.2)  # the greeting, synthesised by the speech server
            await client.say(utterance("what time is it", client.rate))
            await until(lambda: transcribe.requests, 15, "the turn at the transcriber")
            await client.hangup_and_wait()
            await client.close()
            assert speech.requests
            assert len(made) == 2  # one client per engine, shared by the app's calls
            assert not any(c.is_closed() for c in made)  # (open while the app serves)
        finally:
            await gw.app.stop(drain_timeout=0.5)
        try:
            assert [c.is_closed() for c in made] == [True, True]
        finally:
            await close_all(made)


async def test_an_agents_llm_client_is_closed_when_its_call_ends(gateway_factory,
                                                                 monkeypatch):
    from agent.clients.openai import OpenAIClient
    from agent.nodes import OutputAgentNode
    from tests.kit.servers.openai_server import Reply, openai_server

    made = record_clients(monkeypatch)
    async with openai_server(Reply.text("It is noon.")) as server:

        class Agent(OutputAgentNode):  # as gateway/demo.py's does: a client per call
            def __init__(self) -> None:
                super().__init__(name="llm-agent")
                self.llm = OpenAIClient(model="fake-gpt", api_key="x", base_url=server.url,
                                        max_retries=0)

        async def setup(session: Any) -> None:
            session.add_node(Agent())
            await session.start()
            await session.wait_until_complete()

        gw = await gateway_factory(setup, record=False)
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(f"{gw.ws}/ws") as ws:
                await ws.send_json({"type": "start", "sample_rate": 16000})
                await ws.send_json({"type": "text", "text": "what time is it"})
                async for msg in ws:
                    if (msg.type == aiohttp.WSMsgType.TEXT
                            and '"agent.llm.response.end"' in msg.data):
                        break
                await ws.send_json({"type": "hangup"})
            await until(lambda: not gw.app.calls, 10, "the call to end")
            assert made and server.requests  # (the set-up's dry run made one too)
            await until(lambda: all(c.is_closed() for c in made), 2,
                        "the agents' LLM clients to close")
        finally:
            await close_all(made)
