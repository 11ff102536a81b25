"""OpenAIClient against a local OpenAI-compatible server: streaming, tool-call deltas,
non-streaming answers, errors that must surface promptly, and configuration."""

from __future__ import annotations

import asyncio
import json
import socket
from types import SimpleNamespace

import pytest

from agent.clients import (
    ChatChunk,
    ChatStream,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMStatusError,
    LLMStreamError,
    OpenAIClient,
    ToolCallAssembler,
)
from tests.kit.servers.openai_server import FakeOpenAIServer, Reply, ToolCallSpec

pytestmark = pytest.mark.timeout(20)

MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the caller"},
]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def server():
    async with FakeOpenAIServer() as s:
        yield s


@pytest.fixture
async def client(server):
    c = OpenAIClient(model="test-model", base_url=server.url, max_retries=0, timeout=10.0)
    yield c
    await c.aclose()


@pytest.fixture
def clean_env(monkeypatch):
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_MODEL",
                 "ATOMS_LLM_BASE_URL", "ATOMS_LLM_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


async def collect(stream) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


async def test_streaming_text_arrives_in_pieces(server, client):
    text = "Hello there! Thanks for calling, how can I help?"
    server.add(Reply.text(text, chunk_size=5))
    chunks = await collect(client.chat(MESSAGES, stream=True))

    pieces = [c.content for c in chunks if c.content]
    assert "".join(pieces) == text
    assert len(pieces) == -(-len(text) // 5)
    assert [c.finish_reason for c in chunks if c.finish_reason] == ["stop"]
    assert all(c.tool_calls is None for c in chunks)

    (request,) = server.requests
    assert request.model == "test-model"
    assert request.messages == MESSAGES
    assert request.stream is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.tools is None
    assert request.headers["authorization"] == "Bearer not-needed"


async def test_awaited_stream_form_and_summary(server, client):
    """`stream = await client.chat(..., stream=True)` then `async for` also works."""
    server.add(Reply.text("one two three four", chunk_size=3))
    stream = await client.chat(MESSAGES, stream=True)
    assert isinstance(stream, ChatStream)
    chunks = await collect(stream)
    assert "".join(c.content or "" for c in chunks) == "one two three four"
    assert stream.text == "one two three four"
    assert stream.finish_reason == "stop"
    assert stream.tool_calls == []
    assert stream.usage is not None and stream.usage["completion_tokens"] == 4


async def test_tool_call_split_over_many_deltas(server, client):
    arguments = {"city": "San Francisco, California", "unit": "celsius", "days": 3}
    server.add(Reply.tools(ToolCallSpec("get_weather", arguments, id="call_abc"), chunk_size=3))
    chunks = await collect(client.chat(MESSAGES, stream=True, tools=[WEATHER_TOOL]))

    with_calls = [c for c in chunks if c.tool_calls]
    assert len(with_calls) == 1
    (call,) = with_calls[0].tool_calls
    assert call.id == "call_abc"
    assert call.name == "get_weather"
    assert json.loads(call.arguments) == arguments
    assert with_calls[0].finish_reason == "tool_calls"
    assert all(c.content is None for c in chunks)
    assert server.requests[0].tools == [WEATHER_TOOL]
    # the arguments really were split: more stream chunks than calls
    assert len(chunks) > len(json.dumps(arguments)) // 3


@pytest.mark.parametrize("interleave", [False, True])
async def test_two_parallel_tool_calls(server, client, interleave):
    first = ToolCallSpec("get_weather", {"city": "Paris"})
    second = ToolCallSpec("get_time", {"timezone": "Europe/Berlin"})
    server.add(Reply.tools(first, second, chunk_size=2, interleave=interleave))
    stream = client.chat(MESSAGES, stream=True, tools=[WEATHER_TOOL])
    chunks = await collect(stream)

    calls = [call for c in chunks for call in c.tool_calls or ()]
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    assert [json.loads(c.arguments) for c in calls] == [{"city": "Paris"},
                                                         {"timezone": "Europe/Berlin"}]
    assert len({c.id for c in calls}) == 2 and all(c.id for c in calls)
    assert stream.tool_calls == calls


async def test_text_then_tool_call_in_one_answer(server, client):
    server.add(Reply(content="Let me check.", tool_calls=[ToolCallSpec("get_weather",
                                                                       {"city": "Oslo"})]))
    chunks = await collect(client.chat(MESSAGES, stream=True, tools=[WEATHER_TOOL]))
    assert "".join(c.content or "" for c in chunks) == "Let me check."
    calls = [call for c in chunks for call in c.tool_calls or ()]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather", {"city": "Oslo"})]


def test_assembler_handles_servers_that_bend_the_format():
    def delta(index=None, id=None, name=None, arguments=None):
        return SimpleNamespace(index=index, id=id,
                               function=SimpleNamespace(name=name, arguments=arguments))

    assembler = ToolCallAssembler()
    # no index at all: continue the latest call; a name repeated after arguments began is
    # not appended again
    assembler.add([delta(id="a", name="lookup", arguments="")])
    assembler.add([delta(arguments='{"q": ')])
    assembler.add([delta(name="lookup", arguments='"x"}')])
    # the same index reused with a new id starts a new call; a missing id gets one
    assembler.add([delta(index=0, id="b", name="other", arguments="{}")])
    assembler.add([delta(index=1, name="third", arguments="{}")])
    calls = assembler.calls()
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("a", "lookup", '{"q": "x"}'),
        ("b", "other", "{}"),
        ("call_2", "third", "{}"),
    ]


async def test_non_streaming_text_and_tool_calls(server, client):
    server.add(Reply.text("Fine, thanks."),
               Reply.tools(ToolCallSpec("get_weather", {"city": "Rome"}, id="call_9")))
    response = await client.chat(MESSAGES)
    assert response.content == "Fine, thanks."
    assert response.tool_calls == []
    assert response.finish_reason == "stop"
    assert response.usage is not None and response.usage["total_tokens"] > 0

    response = await client.chat(MESSAGES, stream=False, tools=[WEATHER_TOOL])
    assert response.content is None
    assert response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert (call.id, call.name, json.loads(call.arguments)) == ("call_9", "get_weather",
                                                                 {"city": "Rome"})
    assert call.to_dict()["function"]["name"] == "get_weather"
    assert [r.stream for r in server.requests] == [False, False]
    assert "stream_options" not in server.requests[0].body


async def test_request_parameters_defaults_and_overrides(server):
    client = OpenAIClient(model="m1", base_url=server.url, temperature=0.2, max_tokens=50,
                          max_retries=0, top_p=0.9)
    server.add(Reply.text("a"), Reply.text("b"))
    await client.chat(MESSAGES)
    await client.chat(MESSAGES, temperature=0.7, tool_choice="none", max_tokens=None)
    await client.aclose()
    first, second = (r.body for r in server.requests)
    assert (first["temperature"], first["max_tokens"], first["top_p"]) == (0.2, 50, 0.9)
    assert (second["temperature"], second["max_tokens"], second["top_p"]) == (0.7, 50, 0.9)
    assert second["tool_choice"] == "none"


@pytest.mark.parametrize("stream", [True, False])
async def test_server_error_raises_status_error(server, client, stream):
    server.add(Reply.error(500, "model exploded"))
    with pytest.raises(LLMStatusError) as caught:
        if stream:
            await collect(client.chat(MESSAGES, stream=True))
        else:
            await client.chat(MESSAGES)
    assert caught.value.status_code == 500
    assert "500" in str(caught.value) and "model exploded" in str(caught.value)
    assert len(server.requests) == 1  # max_retries=0: no retry


async def test_retries_are_configurable(server):
    client = OpenAIClient(base_url=server.url, max_retries=1)
    server.add(Reply.error(500), Reply.text("recovered"))
    chunks = await collect(client.chat(MESSAGES, stream=True))
    await client.aclose()
    assert "".join(c.content or "" for c in chunks) == "recovered"
    assert len(server.requests) == 2


async def test_stream_cut_halfway_raises_after_partial_text(server, client):
    server.add(Reply.text("This answer will never be finished by the server", chunk_size=4,
                          cut_after=4))
    received: list[str] = []
    with pytest.raises(LLMStreamError) as caught:
        async for chunk in client.chat(MESSAGES, stream=True):
            if chunk.content:
                received.append(chunk.content)
    assert "".join(received) == "This answer "
    assert "broke off" in str(caught.value)


async def test_stream_ending_without_finish_raises(server, client):
    """The body ends cleanly, but without finish_reason or [DONE]."""
    server.add(Reply.text("Half an answ", chunk_size=4, end_after=3))
    with pytest.raises(LLMStreamError, match="before the model finished"):
        await collect(client.chat(MESSAGES, stream=True))


async def test_error_event_mid_stream_raises(server, client):
    server.add(Reply.text("Partial then an error", error_after=3, error_message="overloaded"))
    with pytest.raises(LLMStreamError, match="overloaded"):
        await collect(client.chat(MESSAGES, stream=True))


async def test_stalled_stream_times_out(server):
    client = OpenAIClient(base_url=server.url, max_retries=0, timeout=0.3)
    server.add(Reply.text("Hello and then silence", stall_after=2))
    with pytest.raises(LLMStreamError):
        await collect(client.chat(MESSAGES, stream=True))
    await client.aclose()


async def test_cancelling_the_consumer_closes_the_stream(server, client):
    server.add(Reply.text("Hello and then silence for a long while", stall_after=3))
    first_text = asyncio.Event()

    async def consume():
        async for chunk in client.chat(MESSAGES, stream=True):
            if chunk.content:
                first_text.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first_text.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.disconnected.wait(), 5)
    assert server.disconnects == 1


async def test_unreachable_server_raises_connection_error():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = OpenAIClient(base_url=f"http://127.0.0.1:{port}/v1", max_retries=0)
    with pytest.raises(LLMConnectionError, match="could not reach"):
        await collect(client.chat(MESSAGES, stream=True))
    with pytest.raises(LLMConnectionError):
        await client.chat(MESSAGES)
    await client.aclose()


async def test_environment_configuration(server, clean_env):
    clean_env.setenv("ATOMS_LLM_BASE_URL", server.url)
    clean_env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")  # ATOMS_ wins
    clean_env.setenv("ATOMS_LLM_MODEL", "env-model")
    clean_env.setenv("OPENAI_MODEL", "other-model")
    clean_env.setenv("OPENAI_API_KEY", "sk-from-env")
    server.add(Reply.text("ok"), Reply.text("ok"))
    client = OpenAIClient(max_retries=0)
    assert client.model == "env-model"
    assert (await client.chat(MESSAGES)).content == "ok"
    await client.aclose()

    clean_env.delenv("ATOMS_LLM_BASE_URL")
    clean_env.delenv("ATOMS_LLM_MODEL")
    clean_env.delenv("OPENAI_API_KEY")
    clean_env.setenv("OPENAI_BASE_URL", server.url)
    client = OpenAIClient(max_retries=0)
    assert client.model == "other-model"
    assert (await client.chat(MESSAGES)).content == "ok"
    await client.aclose()

    first, second = server.requests
    assert (first.model, first.headers["authorization"]) == ("env-model", "Bearer sk-from-env")
    assert (second.model, second.headers["authorization"]) == ("other-model",
                                                                "Bearer not-needed")


async def test_explicit_arguments_beat_the_environment(server, clean_env):
    clean_env.setenv("ATOMS_LLM_MODEL", "env-model")
    clean_env.setenv("ATOMS_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    server.add(Reply.text("ok"))
    client = OpenAIClient("arg-model", "sk-arg", server.url, max_retries=0)
    await client.chat(MESSAGES)
    await client.aclose()
    assert server.requests[0].model == "arg-model"
    assert server.requests[0].headers["authorization"] == "Bearer sk-arg"


async def test_no_key_and_no_url_fails_at_first_request(clean_env):
    client = OpenAIClient()
    assert client.model == "gpt-4o-mini"
    with pytest.raises(LLMConfigError, match="OPENAI_API_KEY"):
        await client.chat(MESSAGES)
    with pytest.raises(LLMConfigError):
        await collect(client.chat(MESSAGES, stream=True))
    assert issubclass(LLMConfigError, LLMError) and issubclass(LLMConfigError, ValueError)
    await client.aclose()


def test_negative_retries_rejected():
    with pytest.raises(ValueError, match="max_retries"):
        OpenAIClient(base_url="http://127.0.0.1:9/v1", max_retries=-1)


async def test_published_client_reads_the_fake_server(server):
    """The published SDK's own client, on the official openai package, understands the fake
    server's stream: the server speaks the real format, not just what our client expects."""
    from smallestai.atoms.agent.clients.openai import OpenAIClient as PublishedClient

    text = "Streaming like the real thing."
    server.add(Reply.text(text, chunk_size=6),
               Reply.tools(ToolCallSpec("get_weather", {"city": "Lima"}), chunk_size=3))
    published = PublishedClient(model="m", api_key="k", base_url=server.url)
    stream = await published.chat(MESSAGES, stream=True)
    assert "".join([c.content async for c in stream if c.content]) == text
    stream = await published.chat(MESSAGES, stream=True, tools=[WEATHER_TOOL])
    calls = [call async for c in stream for call in c.tool_calls or ()]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("get_weather",
                                                                   {"city": "Lima"})]
    await published.aclose()
