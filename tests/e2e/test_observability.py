"""Metrics, traces and conversation logs of a real call (issue 24, items 1-3).

A Twilio Media Streams client (tests/kit/clients/) calls a served gateway with the demo
agent, talks over its greeting ("what time is it"), hears the reply and hangs up. Then
`/metrics` is scraped over HTTP and parsed with prometheus-client's own parser, the spans
come from the OpenTelemetry SDK's in-memory exporter, and the conversation log lines from
the `gateway.conversation` logger.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import HOST, utterance
from tests.kit.clients import TwilioClient

QUESTION = "what time is it"


async def scrape(gw: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """`/metrics` over HTTP: {(sample name, sorted labels): value}."""
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http}/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def until(predicate: Any, timeout: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def memory_spans():
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


async def test_a_call_shows_in_metrics_traces_and_the_conversation_log(
        gateway_factory, caplog, memory_spans):
    caplog.set_level(logging.INFO, logger="gateway")
    provider, exporter = memory_spans
    gw = await gateway_factory()
    gw.app.observe.use_tracer_provider(provider)
    before = await scrape(gw)
    assert value(before, "atoms_calls_total", transport="twilio", outcome="completed") is None
    assert value(before, "atoms_reply_latency_seconds_count") == 0

    client = TwilioClient(HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(1.5, timeout=15)  # the greeting plays; talk over it
    during = await scrape(gw)
    assert value(during, "atoms_calls_active", transport="twilio") == 1
    spoken = client.say(utterance(QUESTION, client.rate))
    await client.wait_control("clear", timeout=10)  # the barge-in was confirmed
    t_spoken = await spoken
    await client.wait_audio(1.0, after=t_spoken, timeout=15)  # the reply plays
    await client.hangup_and_wait()
    await client.close()
    await until(lambda: not gw.app.calls, 10, "the call to end")

    after = await scrape(gw)
    assert value(after, "atoms_calls_total", transport="twilio", outcome="completed") == 1
    assert value(after, "atoms_calls_active", transport="twilio") is None
    assert value(after, "atoms_reply_latency_seconds_count") >= 1
    # (a reply cannot come before the caller stopped: well over 0, under the 5 s bucket)
    assert 0 < value(after, "atoms_reply_latency_seconds_sum") < 5 * value(
        after, "atoms_reply_latency_seconds_count")
    assert value(after, "atoms_interrupts_total", kind="confirmed") >= 1
    assert value(after, "atoms_bargein_latency_seconds_count") >= 1
    assert value(after, "atoms_stt_latency_seconds_count") >= 1
    assert value(after, "atoms_tts_first_audio_seconds_count") >= 2  # greeting and reply
    assert value(after, "atoms_media_tick_lag_seconds_count") > 0
    assert value(after, "atoms_frames_dropped_total", direction="out") == 0
    assert value(after, "atoms_agent_errors_total", severity="fatal") is None

    # the conversation log: the greeting cut by the caller, then the caller's turn
    lines = [r for r in caplog.records if r.name == "gateway.conversation"]
    assert len(lines) >= 2, caplog.text
    greeting, turn = lines[0].turn, lines[1].turn
    assert greeting["caller"] is None and greeting["interrupted"] is True
    assert greeting["heard"] and greeting["heard"] != greeting["agent"]
    assert turn["caller"] == QUESTION and turn["agent"] and turn["reply_ms"] > 0
    assert f'caller "{QUESTION}"' in lines[1].getMessage()
    assert "interrupted, heard" in lines[0].getMessage()

    # the traces: a call span, its turns, and the recogniser's and synthesiser's spans
    spans = exporter.get_finished_spans()
    calls = [s for s in spans if s.name == "call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.attributes["atoms.transport"] == "twilio"
    assert call.attributes["atoms.call_id"] == client.call_id
    assert call.attributes["atoms.outcome"] == "completed"
    turns = [s for s in spans if s.name == "turn"]
    assert len(turns) >= 2
    assert all(s.parent.span_id == call.context.span_id for s in turns)
    answered = [s for s in turns if "atoms.reply_latency_ms" in s.attributes]
    assert answered and answered[0].attributes["atoms.call_id"] == client.call_id
    turn_ids = {s.context.span_id for s in turns}
    for name in ("stt", "tts"):
        inner = [s for s in spans if s.name == name]
        assert inner, name
        assert all(s.parent.span_id in turn_ids for s in inner)
        assert all(s.end_time >= s.start_time for s in inner)
        assert inner[0].attributes["atoms.transport"] == "twilio"


async def test_refused_calls_are_counted(gateway_factory):
    gw = await gateway_factory(max_calls=0)
    client = TwilioClient(HOST, gw.port)
    await client.connect()
    await client.start()
    await asyncio.wait_for(client.closed.wait(), 10)
    await client.close()
    samples = await scrape(gw)
    assert value(samples, "atoms_calls_total", transport="twilio", outcome="refused") == 1
    assert value(samples, "atoms_calls_total", transport="twilio", outcome="completed") is None


async def test_apps_in_one_process_keep_their_own_counts(gateway_factory):
    a = await gateway_factory(max_calls=0)
    b = await gateway_factory()
    client = TwilioClient(HOST, a.port)
    await client.connect()
    await client.start()
    await asyncio.wait_for(client.closed.wait(), 10)
    await client.close()
    assert value(await scrape(a), "atoms_calls_total", transport="twilio",
                 outcome="refused") == 1
    assert value(await scrape(b), "atoms_calls_total", transport="twilio",
                 outcome="refused") is None


async def test_an_openai_client_reports_its_first_token_per_call(gateway_factory,
                                                                  memory_spans):
    """A typed turn on /ws answered through `OpenAIClient` (a local OpenAI-protocol server):
    the first token's latency reaches the histogram and the turn's `llm` span."""
    from agent.clients.openai import OpenAIClient
    from agent.nodes import OutputAgentNode
    from tests.kit.servers.openai_server import Reply, openai_server

    provider, exporter = memory_spans
    async with openai_server(Reply.text("It is noon, and a fine day.")) as server:

        class Agent(OutputAgentNode):
            def __init__(self) -> None:
                super().__init__(name="llm-agent")
                self.llm = OpenAIClient(model="fake-gpt", api_key="x", base_url=server.url,
                                        max_retries=0)

        async def setup(session: Any) -> None:
            session.add_node(Agent())
            await session.start()
            await session.wait_until_complete()

        gw = await gateway_factory(setup)
        gw.app.observe.use_tracer_provider(provider)
        async with aiohttp.ClientSession() as http, http.ws_connect(f"{gw.ws}/ws") as ws:
            await ws.send_json({"type": "start", "sample_rate": 16000})
            await ws.send_json({"type": "text", "text": "what time is it"})
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT and '"agent.llm.response.end"' in msg.data:
                    break
            await ws.send_json({"type": "hangup"})
        await until(lambda: not gw.app.calls, 10, "the call to end")
        assert server.requests, "the agent never asked the model"

    samples = await scrape(gw)
    assert value(samples, "atoms_llm_first_token_seconds_count") == 1
    assert value(samples, "atoms_calls_total", transport="web", outcome="completed") == 1
    llm = [s for s in exporter.get_finished_spans() if s.name == "llm"]
    assert len(llm) == 1 and llm[0].attributes["atoms.first_token_ms"] >= 0
    assert llm[0].attributes["atoms.transport"] == "web"


async def test_agent_errors_are_counted_by_severity(gateway_factory):
    """An output node whose reply raises: the session's `agent.error` (fatal) is counted."""
    from agent.nodes import OutputAgentNode

    class Broken(OutputAgentNode):
        async def generate_response(self):
            raise RuntimeError("the model is down")
            yield ""  # (an async generator)

    async def setup(session: Any) -> None:
        session.add_node(Broken(name="broken"))
        await session.start()
        await session.wait_until_complete()

    gw = await gateway_factory(setup)
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{gw.ws}/ws") as ws:
        await ws.send_json({"type": "start", "sample_rate": 16000})
        await ws.send_json({"type": "text", "text": "hello"})
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT and '"agent.error"' in msg.data:
                break
        await ws.send_json({"type": "hangup"})
    await until(lambda: not gw.app.calls, 10, "the call to end")
    samples = await scrape(gw)
    assert value(samples, "atoms_agent_errors_total", severity="fatal") == 1


async def test_atoms_event_sessions_count_as_calls(gateway_factory):
    """An orchestrator on /ws (the Atoms event protocol, `system.init` first) is up as
    transport "atoms" while connected, and ended once it leaves."""
    gw = await gateway_factory()
    async with aiohttp.ClientSession() as http, http.ws_connect(f"{gw.ws}/ws") as ws:
        await ws.send_json({"type": "system.init", "version": "1.0",
                            "session_context": {"initial_variables": {}}})
        async for msg in ws:  # (events come as binary frames, as the published SDK sends)
            if msg.type == aiohttp.WSMsgType.BINARY and b'"agent.ready"' in msg.data:
                break
        during = await scrape(gw)
    await until(lambda: not gw.app.sessions, 10, "the event session to end")
    after = await scrape(gw)
    assert value(during, "atoms_calls_active", transport="atoms") == 1
    assert value(after, "atoms_calls_active", transport="atoms") is None
    assert value(after, "atoms_calls_total", transport="atoms", outcome="completed") == 1
