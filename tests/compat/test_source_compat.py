"""Source compatibility: agents written for the published Atoms SDK (smallestai 4.4.0) run
on ours with only their imports rewritten, and send the same agent events.

Each agent in `tests/compat/agents/` is first served by the published SDK's own `AtomsApp`
(which shows it is a valid 4.4.0 agent), then, with `port_imports` applied, by our
`AtomsApp` on `/ws`. One orchestrator script, built from the published event models, drives
both; the `agent.*` events that reach the orchestrator (type, text, order) must be equal.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.compat.orchestrator import agent_output
from tests.compat.porting import agent_source, load_agent, port_imports, port_module_name
from tests.compat.scripts import AGENTS, Run, chunks, run_agent


@pytest.fixture(scope="module")
def runs() -> dict[tuple[str, str], Run]:
    """Every agent on both servers (published first), once for the whole module."""

    async def all_runs() -> dict[tuple[str, str], Run]:
        out = {}
        for name in AGENTS:
            for flavor in ("published", "ours"):
                out[name, flavor] = await run_agent(name, flavor)
        return out

    return asyncio.run(all_runs())


# -- the mapping ---------------------------------------------------------------------------


def test_import_mapping():
    assert port_module_name("smallestai.atoms.agent.events") == "agent.events"
    assert port_module_name("smallestai.atoms.agent.nodes") == "agent.nodes"
    assert port_module_name("smallestai.atoms.agent.clients.openai") == "agent.clients.openai"
    assert port_module_name("smallestai.atoms.agent.server") == "gateway.app"
    assert port_module_name("smallestai.atoms.crew.session") == "agent.session"
    assert port_module_name("smallestai.atoms.crew.nodes.output_crew") == (
        "agent.nodes.output_agent")
    assert port_module_name("smallestai.atoms.crew.nodes.background_crew") == (
        "agent.nodes.background_agent")
    assert port_module_name("smallestai.atoms.crew.server") == "gateway.app"
    assert port_module_name("numpy.linalg") == "numpy.linalg"
    src = ('"""Uses smallestai.atoms.agent.events."""\n'
           "from smallestai.atoms.agent.events import (\n    SDKEvent,\n)\n"
           "import smallestai.atoms.agent.tools as t\n"
           "from smallestai.atoms.crew.nodes import OutputCrewNode\n")
    assert port_imports(src) == ('"""Uses smallestai.atoms.agent.events."""\n'
                                 "from agent.events import (\n    SDKEvent,\n)\n"
                                 "import agent.tools as t\n"
                                 "from agent.nodes import OutputCrewNode\n")


@pytest.mark.parametrize("name", AGENTS)
def test_ported_modules_import_and_name_the_same_classes(name):
    published, ours = load_agent(name, "published"), load_agent(name, "ours")
    assert "smallestai" in agent_source(name)
    mine = {k for k, v in vars(ours).items() if isinstance(v, type)}
    theirs = {k for k, v in vars(published).items() if isinstance(v, type)}
    assert mine == theirs
    for cls_name in mine:
        if vars(ours)[cls_name].__module__ == ours.__name__:  # the agent's own classes
            bases = [b.__name__ for b in vars(ours)[cls_name].__mro__[1:3]]
            assert bases == [b.__name__ for b in vars(published)[cls_name].__mro__[1:3]]


def test_5x_names_are_aliases():
    from agent.nodes import BackgroundAgentNode, BackgroundCrewNode, OutputAgentNode, OutputCrewNode
    from agent.session import AgentSession, CrewSession

    assert OutputCrewNode is OutputAgentNode and BackgroundCrewNode is BackgroundAgentNode
    assert CrewSession is AgentSession


# -- same output on both -------------------------------------------------------------------


@pytest.mark.parametrize("name", AGENTS)
def test_agent_events_are_the_same_on_both(runs, name):
    published, ours = runs[name, "published"], runs[name, "ours"]
    theirs = agent_output(published.received)
    assert theirs[0] == ("agent.ready",)
    assert len(theirs) > 5
    assert agent_output(ours.received) == theirs


def test_reference_example(runs):
    published, ours = runs["sales", "published"], runs["sales", "ours"]
    for run in (published, ours):
        assert chunks(run.received) == ["You said: I want boots", "Once upon a time ",
                                        "You said: thanks"]
        # the interrupt cancelled the story: its second half never came
        assert not any(m.get("text") == "there was a shoe." for m in run.received)
        assert run.module.SEEN.count("system.control.interrupt") == 1
    assert ours.module.SEEN == published.module.SEEN
    assert ours.module.RECEIVED == published.module.RECEIVED
    # Hooks on event names: 4.4.0 ignores every name but "on_event_received" (it logs a
    # warning); ours fire, once per event, though the tracker passes the join and the
    # interrupt on to the Sink.
    assert published.module.HOOKS == []
    assert sorted(ours.module.HOOKS) == ["interrupted", "joined",
                                         f"spoke:{ours.module.GREETING}"]


def test_pipeline_with_background_node(runs):
    published, ours = runs["pipeline", "published"], runs["pipeline", "ours"]
    assert published.module.NOTES == ["my room is ###", "I have a complaint about room #"]
    assert ours.module.NOTES == published.module.NOTES
    assert ours.module.RECEIVED == published.module.RECEIVED
    assert "system.control.interrupt" in ours.module.RECEIVED
    # 4.4.0's only working session hook, "on_event_received": every event from the peer
    assert published.module.FROM_PEER == [
        "system.user.joined", "agent.transcript.update", "system.llm.request",
        "agent.transcript.update", "system.user.stopped_speaking", "system.control.interrupt",
        "system.llm.request"]
    assert ours.module.FROM_PEER == published.module.FROM_PEER
    assert chunks(ours.received)[-1] == "Noted 2 requests, the last one: I have a complaint " \
                                        "about room #"


def test_context_agent(runs):
    published, ours = runs["receptionist", "published"], runs["receptionist", "ours"]
    assert published.module.CONTEXTS == ours.module.CONTEXTS
    last = ours.module.CONTEXTS[-1]
    assert last[1] == {"role": "system", "content": "The caller is Ada on the gold plan."}
    assert last[-2:] == [{"role": "assistant", "content": "Message 1 of"},
                         {"role": "user", "content": "and breakfast"}]
    assert chunks(ours.received)[-1] == "Certainly! Message 3 of our talk was: and breakfast"


def test_tools_agent(runs):
    published, ours = runs["shopkeeper", "published"], runs["shopkeeper", "ours"]
    assert chunks(ours.received) == ["We have 3 pairs of boots.", "Sorry, no slippers.",
                                     "Goodbye!"]
    assert [m["type"] for m in ours.received].count("agent.end_call") == 1
    results = ours.module.TOOL_RESULTS
    assert results[0] == {"name": "check_stock", "content": {"item": "boots", "count": 3}}
    assert results[0] == published.module.TOOL_RESULTS[0]
    assert results[2] == published.module.TOOL_RESULTS[2] == {"name": "end_call",
                                                              "content": "call ended"}
    # a raising tool goes back to the model as an error result on both (wording differs)
    assert "slippers" in str(results[1]["content"])
    assert "slippers" in str(published.module.TOOL_RESULTS[1]["content"])
    # what the model was sent: same conversations, same tool schemas
    assert published.llm is not None and ours.llm is not None
    theirs = [r.messages for r in published.llm.requests]
    mine = [r.messages for r in ours.llm.requests]
    assert len(mine) == len(theirs) == 6
    assert [[m["role"] for m in ms] for ms in mine] == [[m["role"] for m in ms] for ms in theirs]
    assert ours.llm.requests[0].tools == published.llm.requests[0].tools
    # Tool message contents differ in two ways; everything else the model saw is the same:
    # a raising tool: ours "Error: KeyError: '...'", 4.4.0 str(exc) only; a tool returning a
    # str: 4.4.0 JSON-encodes it ('"call ended"'), ours sends the text as is.
    last_mine, last_theirs = mine[-1], theirs[-1]
    tool_pairs = [(a, b) for a, b in zip(last_mine, last_theirs, strict=True)
                  if a["role"] == "tool"]
    assert [(a["content"], b["content"]) for a, b in tool_pairs] == [
        ('{"item": "boots", "count": 3}', '{"item": "boots", "count": 3}'),
        ("Error: KeyError: 'no such item: slippers'", "'no such item: slippers'"),
        ("call ended", '"call ended"'),
    ]
    strip = [{k: v for k, v in m.items() if not (m["role"] == "tool" and k == "content")}
             for m in last_mine]
    assert strip == [{k: v for k, v in m.items() if not (m["role"] == "tool" and k == "content")}
                     for m in last_theirs]
