"""RemoteSession against the published SDK's own AtomsApp as the agent server."""

import asyncio

from agent.events import (
    SDKAgentTranscriptUpdateEvent,
    SDKSystemControlInterruptEvent,
    SDKSystemInitEvent,
    SDKSystemLLMRequestEvent,
    SDKSystemUserJoinedEvent,
)
from gateway.remote_agent import RemoteSession
from tests.compat.published_agents import greeter_setup
from tests.compat.published_server import free_port, published_atoms_app
from tests.kit.fakes import Collector


def init() -> SDKSystemInitEvent:
    return SDKSystemInitEvent.model_validate({
        "version": "1.0",
        "session_context": {"initial_variables": {"plan": "gold"},
                            "conversation_type": "telephonyInbound",
                            "caller": {"user_number": "+15550001", "call_id": "c1"}}})


async def test_remote_session_talks_to_the_published_atoms_app():
    async with published_atoms_app(greeter_setup) as url:
        remote = RemoteSession(url, init(), call_id="c1", apology="Sorry.")
        out = Collector()
        remote.set_output(out)
        await remote.deliver(init())
        assert remote.is_started
        await remote.deliver(SDKSystemUserJoinedEvent())
        greet = await out.wait_for(lambda e: e.type == "agent.speak")
        assert greet.text == "Hello from the agent server."
        await remote.deliver(SDKAgentTranscriptUpdateEvent(role="user", content="hi there"))
        await remote.deliver(SDKSystemLLMRequestEvent())
        await out.wait_for(lambda e: e.type == "agent.llm.response.end")
        await remote.deliver(SDKSystemControlInterruptEvent())
        text = "".join(e.text for e in out.events if e.type == "agent.llm.response.chunk")
        assert text == "You said hi there."
        # echoes of what we sent never come back as output
        assert not any(e.type.startswith("system.") for e in out.events)
        assert not any(e.type == "agent.transcript.update" for e in out.events)
        await remote.close()


async def test_unreachable_agent_server_gives_apology_and_end_call():
    remote = RemoteSession(f"ws://127.0.0.1:{free_port()}/ws", init(), call_id="c2",
                           apology="Sorry, the agent is unavailable.", handshake_timeout=2)
    out = Collector()
    remote.set_output(out)
    await remote.deliver(init())
    await out.wait_for(lambda e: e.type == "agent.end_call")
    assert [e.type for e in out.events] == ["agent.speak", "agent.end_call"]
    assert out.events[0].text == "Sorry, the agent is unavailable."
    await remote.deliver(SDKSystemUserJoinedEvent())  # ignored, no error
    await remote.close()


async def test_agent_server_dying_mid_call_ends_that_call():
    async with published_atoms_app(greeter_setup) as url:
        remote = RemoteSession(url, init(), call_id="c3", apology="Sorry.")
        out = Collector()
        remote.set_output(out)
        await remote.deliver(init())
        await remote.deliver(SDKSystemUserJoinedEvent())
        await out.wait_for(lambda e: e.type == "agent.speak")
    # the server is gone now
    await out.wait_for(lambda e: e.type == "agent.end_call", timeout=10)
    assert out.events[-2].type == "agent.speak" and out.events[-2].text == "Sorry."
    await remote.close()
    await asyncio.sleep(0)
