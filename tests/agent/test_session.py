"""AgentSession driven through deliver/set_output: real event flow, no sleeps for sync."""

import asyncio

import pytest

from agent.events import (
    SDKAgentSpeakEvent,
    SDKAgentTranscriptUpdateEvent,
    SDKSystemControlInterruptEvent,
    SDKSystemDtmfEvent,
    SDKSystemLLMRequestEvent,
    SDKSystemUserJoinedEvent,
)
from agent.nodes import BackgroundAgentNode, Node, OutputAgentNode
from agent.session import AgentSession
from tests.kit.fakes import Collector


class SalesAgent(OutputAgentNode):
    def __init__(self):
        super().__init__(name="sales")
        self.context.add_message({"role": "system", "content": "You sell things."})

    async def generate_response(self):
        last = self.context.messages[-1]["content"]
        yield "You said: "
        yield last

    async def on_event(self, event):
        if event.type == "system.user.joined":
            await self.speak("Welcome to the store!")


class StatsTracker(Node):
    def __init__(self):
        super().__init__()
        self.seen: list[str] = []

    async def process_event(self, event):
        self.seen.append(event.type)
        await self.send_event(event)


async def reference_setup(session: AgentSession, effects: list[str]):
    agent = SalesAgent()
    tracker = StatsTracker()
    session.add_node(tracker)
    session.add_node(agent)
    session.add_edge(tracker, agent)

    @session.on_event("system.control.interrupt")
    async def on_interrupt(session, event):
        effects.append("interrupted")

    @session.on_event("system.user_joined")
    async def welcome(session, event):
        effects.append("joined")

    @session.on_event("agent.speak")
    async def track_speech(session, event):
        effects.append(f"spoke:{event.text}")

    await session.start()
    await session.wait_until_complete()
    return tracker, agent


async def test_reference_example_runs_through_deliver_and_set_output():
    session = AgentSession(context={"caller": "+15550100"})
    out = Collector()
    session.set_output(out)
    effects: list[str] = []
    setup = asyncio.create_task(reference_setup(session, effects))
    await session.wait_until_started()
    await out.wait_for(lambda e: e.type == "agent.ready")

    await session.deliver(SDKSystemUserJoinedEvent())
    await out.wait_for(lambda e: e.type == "agent.speak")
    await session.deliver(SDKAgentTranscriptUpdateEvent(role="user", content="I want shoes"))
    await session.deliver(SDKSystemLLMRequestEvent())
    await out.wait_for(lambda e: e.type == "agent.llm.response.end")
    await session.deliver(SDKSystemControlInterruptEvent())
    await out.wait_for(lambda e: e.type == "system.control.interrupt")

    await session.close("hangup")
    tracker, agent = await asyncio.wait_for(setup, 5)

    text = "".join(e.text for e in out.events if e.type == "agent.llm.response.chunk")
    assert text == "You said: I want shoes"
    speak = [e for e in out.events if isinstance(e, SDKAgentSpeakEvent)]
    assert [e.text for e in speak] == ["Welcome to the store!"]
    # once per event: "joined" and "interrupted" enter at Root and reach the Sink too
    assert sorted(effects) == ["interrupted", "joined", "spoke:Welcome to the store!"]
    assert tracker.seen[:3] == ["system.user.joined", "agent.transcript.update", "system.llm.request"]
    assert session.context["caller"] == "+15550100"
    assert agent.context.messages[-1] == {"role": "assistant", "content": "You said: I want shoes"}
    order = out.types()
    assert order.index("agent.llm.response.start") < order.index("agent.llm.response.chunk")
    assert order.index("agent.llm.response.chunk") < order.index("agent.llm.response.end")


def make_nodes(*names):
    return [Node(name=n) for n in names]


@pytest.mark.parametrize(
    "edges, cycle",
    [
        ([("a", "b"), ("b", "a")], "a -> b -> a"),
        ([("a", "a")], "a -> a"),
        ([("a", "b"), ("b", "c"), ("c", "b")], "b -> c -> b"),
    ],
)
async def test_cycles_raise_value_error_naming_the_cycle(edges, cycle):
    session = AgentSession()
    nodes = {n: Node(name=n) for e in edges for n in e}
    for p, c in edges:
        session.add_edge(nodes[p], nodes[c])
    with pytest.raises(ValueError, match=cycle):
        await session.start()


async def test_cycle_unreachable_from_root_is_found():
    session = AgentSession()
    a, b, c, d = make_nodes("a", "b", "c", "d")
    session.add_edge(a, b)
    session.add_edge(c, d)
    session.add_edge(d, c)  # c and d both have parents: nothing links them to Root
    with pytest.raises(ValueError, match="c -> d -> c"):
        await session.start()


async def test_graph_is_locked_after_start():
    session = AgentSession()
    a, b = make_nodes("a", "b")
    session.add_node(a)
    await session.start()
    with pytest.raises(RuntimeError):
        session.add_node(b)
    with pytest.raises(RuntimeError):
        session.add_edge(a, b)
    await session.close()


class Counter(OutputAgentNode):
    def __init__(self):
        super().__init__("counter")
        self.count = 0

    async def generate_response(self):
        self.count += 1
        yield f"{self.count}"


async def test_two_sessions_never_share_state():
    outs, agents, sessions = [], [], []
    for i in range(2):
        s = AgentSession(context={"n": i})
        agent = Counter()
        s.add_node(agent)
        out = Collector()
        s.set_output(out)
        await s.start()
        outs.append(out)
        agents.append(agent)
        sessions.append(s)
    sessions[0].context["only_first"] = True
    for _ in range(3):
        await sessions[0].deliver(SDKSystemLLMRequestEvent())
    await sessions[1].deliver(SDKSystemLLMRequestEvent())
    await outs[0].wait_for(lambda e: getattr(e, "text", None) == "3")
    await outs[1].wait_for(lambda e: getattr(e, "text", None) == "1")
    assert agents[0].count == 3 and agents[1].count == 1
    assert "only_first" not in sessions[1].context
    assert len(agents[0].context.messages) == 3 and len(agents[1].context.messages) == 1
    for s in sessions:
        await s.close()


class SlowAgent(OutputAgentNode):
    def __init__(self, gate: asyncio.Event):
        super().__init__("slow")
        self.gate = gate
        self.started = asyncio.Event()
        self.cancelled = False
        self.handled: list[str] = []

    async def generate_response(self):
        yield "The story begins"
        self.started.set()
        try:
            await self.gate.wait()  # would run forever without the interrupt
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        yield " and never ends"

    async def on_event(self, event):
        self.handled.append(event.type)


async def test_interrupt_cancels_generation_and_drops_queued_events():
    session = AgentSession()
    agent = SlowAgent(asyncio.Event())
    session.add_node(agent)
    out = Collector()
    session.set_output(out)
    await session.start()
    await session.deliver(SDKSystemLLMRequestEvent())
    await asyncio.wait_for(agent.started.wait(), 5)
    # queued behind the running generation: must be dropped by the interrupt
    await session.deliver(SDKSystemDtmfEvent(digit="1"))
    await session.deliver(SDKSystemDtmfEvent(digit="2"))
    await session.deliver(SDKSystemControlInterruptEvent())
    assert agent.cancelled
    await session.deliver(SDKSystemDtmfEvent(digit="9"))
    await out.wait_for(lambda e: getattr(e, "digit", None) == "9")
    digits = [e.digit for e in out.events if e.type == "system.dtmf"]
    assert digits == ["9"]
    assert "system.control.interrupt" in agent.handled
    assert not any(getattr(e, "text", "") == " and never ends" for e in out.events)
    # the interrupted reply stays in the context until the gateway says what was heard
    await session.deliver(SDKAgentTranscriptUpdateEvent(role="assistant", content="The story"))
    await out.wait_for(lambda e: getattr(e, "content", None) == "The story")
    assert agent.context.messages == [{"role": "assistant", "content": "The story"}]
    await session.close()


class Faulty(Node):
    def __init__(self):
        super().__init__("faulty")
        self.processed = 0

    async def process_event(self, event):
        self.processed += 1
        if isinstance(event, SDKSystemDtmfEvent) and event.digit == "0":
            raise RuntimeError("bad digit")
        await self.send_event(event)


class FaultyOutput(OutputAgentNode):
    async def generate_response(self):
        yield "partial"
        raise KeyError("llm gone")


async def test_raising_node_reports_error_and_keeps_running():
    session = AgentSession()
    node = Faulty()
    session.add_node(node)
    out = Collector()
    session.set_output(out)
    calls: list[str] = []

    @session.on_event("system.dtmf")
    def bad_hook(session, event):
        calls.append(event.digit)
        raise ValueError("hook bug")

    await session.start()
    await session.deliver(SDKSystemDtmfEvent(digit="0"))
    await session.deliver(SDKSystemDtmfEvent(digit="1"))
    err = await out.wait_for(lambda e: e.type == "agent.error")
    await out.wait_for(lambda e: getattr(e, "digit", None) == "1")
    assert err.severity == "warning"
    assert err.payload["node_name"] == "faulty"
    assert err.payload["error_class"] == "RuntimeError"
    assert "bad digit" in err.payload["traceback"]
    assert node.processed == 2
    await session.close()
    assert sorted(calls) == ["0", "1"]  # once each, though "1" also reached the Sink


async def test_output_node_error_is_fatal_and_ends_response():
    session = AgentSession()
    session.add_node(FaultyOutput("out"))
    out = Collector()
    session.set_output(out)
    await session.start()
    await session.deliver(SDKSystemLLMRequestEvent())
    await out.wait_for(lambda e: e.type == "agent.llm.response.end")
    err = next(e for e in out.events if e.type == "agent.error")
    assert err.severity == "fatal" and err.payload["error_class"] == "KeyError"
    await session.deliver(SDKSystemLLMRequestEvent())
    await out.wait_for(lambda e: e.type == "agent.error" and e is not err)
    await session.close()


async def test_close_runs_user_left_hooks_and_completes():
    session = AgentSession()
    session.add_node(BackgroundAgentNode("bg"))
    left: list[str] = []
    session.on_event("system.user_left")(lambda s, e: left.append(e.reason))
    await session.start()
    waiter = asyncio.create_task(session.wait_until_complete())
    await session.close("caller hung up")
    await asyncio.wait_for(waiter, 5)
    assert left == ["caller hung up"]


async def test_star_hook_sees_inbound_and_outbound():
    session = AgentSession()
    session.add_node(Counter())
    seen: list[str] = []
    session.on_event("*")(lambda s, e: seen.append(e.type))
    out = Collector()
    session.set_output(out)
    await session.start()
    await session.deliver(SDKSystemLLMRequestEvent())
    await out.wait_for(lambda e: e.type == "agent.llm.response.end")
    await session.close()
    assert "system.llm.request" in seen and "agent.llm.response.chunk" in seen
    assert "agent.ready" in seen and "system.user.left" in seen


class Echo(Node):
    """Forwards every event, and says each digit it sees."""

    async def process_event(self, event):
        await self.send_event(event)
        if event.type == "system.dtmf":
            await self.send_event(SDKAgentSpeakEvent(text=f"you pressed {event.digit}"))


async def test_hooks_fire_once_per_event_whichever_way_it_flows():
    """An event from the caller that two branches pass on to the Sink, and an event a node
    makes that reaches the Sink by two paths, each run a hook once; "on_event_received"
    runs once for each event from the caller and never for the agent's own."""
    session = AgentSession()
    first, left, right = Echo("first"), Node("left"), Node("right")
    for node in (left, right):  # first -> left -> Sink, first -> right -> Sink
        node.process_event = node.send_event  # type: ignore[method-assign]
        session.add_edge(first, node)
    out = Collector()
    session.set_output(out)
    named: list[str] = []
    star: list[str] = []
    received: list[str] = []
    session.on_event("system.dtmf")(lambda s, e: named.append(e.digit))
    session.on_event("agent.speak")(lambda s, e: named.append(e.text))
    session.on_event("*")(lambda s, e: star.append(e.type))
    session.on_event("on_event_received")(lambda s, e: received.append(e.type))
    await session.start()
    await session.deliver(SDKSystemDtmfEvent(digit="5"))
    await session.deliver(SDKSystemDtmfEvent(digit="6"))
    await out.wait_for(lambda e: getattr(e, "text", None) == "you pressed 6")
    await out.wait_for(lambda e: len([x for x in out.events if x.type == "agent.speak"]) == 4)
    await session.close()
    assert out.types().count("system.dtmf") == 4  # two paths each: the graph is unchanged
    assert sorted(named) == ["5", "6", "you pressed 5", "you pressed 6"]
    assert sorted(star) == ["agent.ready", "agent.speak", "agent.speak", "system.dtmf",
                            "system.dtmf", "system.user.left"]
    assert received == ["system.dtmf", "system.dtmf"]


async def test_thousand_sessions_leave_no_tasks():
    before = len(asyncio.all_tasks())
    for _ in range(1000):
        s = AgentSession()
        a, b = Counter(), StatsTracker()
        s.add_edge(b, a)
        s.on_event("agent.ready")(lambda s, e: None)
        await s.start()
        await s.deliver(SDKSystemLLMRequestEvent())
        await s.close()
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) == before
