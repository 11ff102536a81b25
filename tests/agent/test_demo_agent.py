import asyncio

from agent.events import (
    SDKAgentTranscriptUpdateEvent,
    SDKSystemLLMRequestEvent,
    SDKSystemUserJoinedEvent,
)
from agent.session import AgentSession
from gateway import demo
from tests.kit.fakes import Collector


async def run_turn(session, out, text):
    n = len(out.events)
    await session.deliver(SDKAgentTranscriptUpdateEvent(role="user", content=text))
    await session.deliver(SDKSystemLLMRequestEvent())
    await out.wait_for(
        lambda e: e.type == "agent.llm.response.end" and any(x is e for x in out.events[n:]))
    new = out.events[n:]
    return "".join(e.text for e in new if e.type == "agent.llm.response.chunk"), new


async def test_demo_agent_greets_answers_transfers_and_hangs_up(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ATOMS_LLM_BASE_URL", raising=False)
    session = AgentSession()
    out = Collector()
    session.set_output(out)
    task = asyncio.create_task(demo.setup(session))
    await session.wait_until_started()
    await session.deliver(SDKSystemUserJoinedEvent())
    greet = await out.wait_for(lambda e: e.type == "agent.speak")
    assert greet.text == demo.GREETING and len(greet.text.split()) >= 12  # > 4 s of speech

    text, _ = await run_turn(session, out, "what time is it")
    assert text.startswith("It is ")
    text, _ = await run_turn(session, out, "tell me a story")
    assert text == demo.STORY and len(text) > 400
    text, events = await run_turn(session, out, "operator")
    assert any(e.type == "agent.transfer_call" for e in events)
    await session.close()
    await asyncio.wait_for(task, 5)


async def test_demo_agent_ends_call_on_goodbye(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ATOMS_LLM_BASE_URL", raising=False)
    session = AgentSession()
    out = Collector()
    session.set_output(out)
    task = asyncio.create_task(demo.setup(session))
    await session.wait_until_started()
    text, events = await run_turn(session, out, "goodbye")
    assert "Goodbye" in text
    assert [e.type for e in events].index("agent.end_call") < [e.type for e in events].index(
        "agent.llm.response.end")
    # no generation after end_call
    n = len(out.events)
    await session.deliver(SDKSystemLLMRequestEvent())
    await session.deliver(SDKAgentTranscriptUpdateEvent(role="user", content="hello"))
    await out.wait_for(lambda e: getattr(e, "content", None) == "hello")
    assert not any(e.type == "agent.llm.response.start" for e in out.events[n:])
    await session.close()
    await asyncio.wait_for(task, 5)


async def test_demo_agent_says_it_did_not_catch_unrecognised_speech(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ATOMS_LLM_BASE_URL", raising=False)
    session = AgentSession()
    out = Collector()
    session.set_output(out)
    task = asyncio.create_task(demo.setup(session))
    await session.wait_until_started()
    text, events = await run_turn(session, out, demo.UNRECOGNISED)
    assert text.startswith(demo.NOT_CAUGHT)
    assert not any(e.type in ("agent.end_call", "agent.transfer_call") for e in events)
    text, _ = await run_turn(session, out, "hello")  # and the phrases still work
    assert text == "Hello! How can I help you today?"
    await session.close()
    await asyncio.wait_for(task, 5)
