"""The event scripts that drive the compatibility agents (tests/compat/agents/), the same
for the published SDK's server and ours, and what reading their output needs."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

from tests.compat.orchestrator import Orchestrator, Step, init_event, pub, saw
from tests.compat.porting import load_agent
from tests.compat.servers import serve
from tests.kit.servers.openai_server import FakeOpenAIServer, Reply, ToolCallSpec

AGENTS = ["sales", "pipeline", "receptionist", "shopkeeper"]


def user(text: str) -> pub.SDKAgentTranscriptUpdateEvent:
    return pub.SDKAgentTranscriptUpdateEvent(role="user", content=text)


def heard(text: str) -> pub.SDKAgentTranscriptUpdateEvent:
    return pub.SDKAgentTranscriptUpdateEvent(role="assistant", content=text)


def llm_request() -> pub.SDKSystemLLMRequestEvent:
    return pub.SDKSystemLLMRequestEvent()


def ends(n: int):
    return saw("agent.llm.response.end", n)


def echo(text: str, role: str = "user"):
    return saw("agent.transcript.update", role=role, content=text)


# -- the event scripts (one per agent, the same for both servers) -----------------------


def sales_script(**_: Any) -> list[Step]:
    return [
        Step(init_event({"customer": "Ada"}), saw("agent.ready")),
        Step(pub.SDKSystemUserJoinedEvent(), saw("agent.speak")),
        Step(user("I want boots"), echo("I want boots")),
        Step(llm_request(), ends(1)),
        Step(user("tell me a story"), echo("tell me a story")),
        Step(llm_request(), saw("agent.llm.response.chunk", text="Once upon a time ")),
        Step(pub.SDKSystemControlInterruptEvent(), ends(2)),
        Step(heard("Once upon"), echo("Once upon", "assistant")),
        Step(user("thanks"), echo("thanks")),
        Step(llm_request(), ends(3)),
    ]


def pipeline_script(**_: Any) -> list[Step]:
    return [
        Step(init_event(), saw("agent.ready")),
        Step(pub.SDKSystemUserJoinedEvent(), saw("agent.speak")),
        Step(user("my room is 412"), echo("my room is ###")),
        Step(llm_request(), ends(1)),
        Step(user("I have a complaint about room 7"), echo("I have a complaint about room #")),
        Step(pub.SDKSystemUserStoppedSpeakingEvent(),
             saw("agent.speak", text="I have noted your complaint.")),
        Step(pub.SDKSystemControlInterruptEvent(), saw("system.control.interrupt")),
        Step(llm_request(), ends(2)),
    ]


def receptionist_script(**_: Any) -> list[Step]:
    return [
        Step(init_event({"customer": "Ada", "plan": "gold"}), saw("agent.ready")),
        Step(pub.SDKSystemUserJoinedEvent(), saw("agent.speak")),
        Step(user("I need a room"), echo("I need a room")),
        Step(llm_request(), ends(1)),
        Step(heard("Message 1 of"), saw("agent.speak", text="(heard 3 words)")),
        Step(pub.SDKSystemUpdateOutputAgentSettingsEvent(settings={"tone": "cheerful"}),
             saw("system.output_agent.update_settings")),
        Step(user("and breakfast"), echo("and breakfast")),
        Step(llm_request(), ends(2)),
    ]


def shopkeeper_script(llm_url: str = "", **_: Any) -> list[Step]:
    return [
        Step(init_event({"llm_url": llm_url}), saw("agent.ready")),
        Step(pub.SDKSystemUserJoinedEvent(), saw("system.user.joined")),
        Step(user("do you have boots"), echo("do you have boots")),
        Step(llm_request(), ends(1)),
        Step(heard("We have 3 pairs of boots."), echo("We have 3 pairs of boots.", "assistant")),
        Step(user("and slippers"), echo("and slippers")),
        Step(llm_request(), ends(2)),
        Step(heard("Sorry, no slippers."), echo("Sorry, no slippers.", "assistant")),
        Step(user("goodbye"), echo("goodbye")),
        Step(llm_request(), ends(3)),
    ]


def shopkeeper_replies() -> list[Reply]:
    return [
        Reply.tools(ToolCallSpec("check_stock", {"item": "boots"})),
        Reply.text("We have 3 pairs of boots."),
        Reply.tools(ToolCallSpec("check_stock", {"item": "slippers"})),
        Reply.text("Sorry, no slippers."),
        Reply(content="Goodbye!", tool_calls=[ToolCallSpec("end_call")]),
        Reply.text(""),
    ]


SCRIPTS = {"sales": sales_script, "pipeline": pipeline_script,
           "receptionist": receptionist_script, "shopkeeper": shopkeeper_script}


@dataclass
class Run:
    module: ModuleType
    received: list[dict[str, Any]]
    llm: FakeOpenAIServer | None = None


async def run_agent(name: str, flavor: str, extra: list[Step] | None = None,
                    replies: list[Reply] | None = None) -> Run:
    """Serve agent `name` on `flavor`'s AtomsApp and drive it with its script (plus
    `extra` steps); the shopkeeper's model answers with its replies (plus `replies`)."""
    module = load_agent(name, flavor)  # type: ignore[arg-type]
    llm = None
    if name == "shopkeeper":
        llm = await FakeOpenAIServer(shopkeeper_replies() + (replies or [])).start()
    try:
        async with serve(flavor, module.setup) as url:  # type: ignore[arg-type]
            client = Orchestrator(url)
            await client.connect()
            try:
                steps = SCRIPTS[name](llm_url=llm.url if llm else "")
                await client.run(steps + (extra or []))
            finally:
                await client.close()
    finally:
        if llm is not None:
            await llm.close()
    return Run(module, client.received, llm)


def chunks(received: list[dict[str, Any]]) -> list[str]:
    """The text of each generation, in order."""
    out, current = [], None
    for m in received:
        if m["type"] == "agent.llm.response.start":
            current = []
        elif m["type"] == "agent.llm.response.chunk" and current is not None:
            current.append(m["text"])
        elif m["type"] == "agent.llm.response.end" and current is not None:
            out.append("".join(current))
            current = None
    return out
