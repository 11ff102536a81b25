"""OutputAgentNode's tool loop against the local OpenAI-compatible server."""

import asyncio

from agent.clients.openai import OpenAIClient
from agent.events import (
    SDKAgentTranscriptUpdateEvent,
    SDKSystemControlInterruptEvent,
    SDKSystemLLMRequestEvent,
)
from agent.nodes import OutputAgentNode
from agent.session import AgentSession
from agent.tools import ToolRegistry, function_tool
from tests.kit.fakes import Collector
from tests.kit.servers.openai_server import FakeOpenAIServer, Reply, ToolCallSpec


class OrderAgent(OutputAgentNode):
    def __init__(self, url: str, gate: asyncio.Event | None = None):
        super().__init__(name="orders")
        self.llm = OpenAIClient(model="fake-gpt", base_url=url, max_retries=0)
        self.tools = ToolRegistry()
        self.tools.discover(self)
        self.gate = gate
        self.looked_up: list[str] = []
        self.in_tool = asyncio.Event()

    @function_tool
    async def lookup_order(self, order_id: str) -> dict:
        """Find an order.

        Args:
            order_id: The order number.
        """
        self.looked_up.append(order_id)
        self.in_tool.set()
        if self.gate is not None:
            await self.gate.wait()
        return {"order_id": order_id, "status": "shipped"}

    @function_tool
    def broken(self) -> str:
        """A tool that fails."""
        raise RuntimeError("database down")


async def start(agent):
    session = AgentSession()
    session.add_node(agent)
    out = Collector()
    session.set_output(out)
    await session.start()
    await session.deliver(SDKAgentTranscriptUpdateEvent(role="user", content="where is 42?"))
    await session.deliver(SDKSystemLLMRequestEvent())
    return session, out


async def test_tool_calls_run_and_the_model_continues():
    async with FakeOpenAIServer([
        Reply.tools(ToolCallSpec("lookup_order", {"order_id": "42"}),
                    ToolCallSpec("broken", {}), chunk_size=3),
        Reply.text("Order 42 has shipped."),
    ]) as server:
        agent = OrderAgent(server.url)
        session, out = await start(agent)
        await out.wait_for(lambda e: e.type == "agent.llm.response.end")
        text = "".join(e.text for e in out.events if e.type == "agent.llm.response.chunk")
        assert text == "Order 42 has shipped."
        assert agent.looked_up == ["42"]
        second = server.requests[1].messages
        roles = [m["role"] for m in second]
        assert roles[-3:] == ["assistant", "tool", "tool"]
        assert [c["function"]["name"] for c in second[-3]["tool_calls"]] == ["lookup_order",
                                                                             "broken"]
        assert "shipped" in second[-2]["content"]
        assert second[-1]["content"].startswith("Error") and "database down" in second[-1]["content"]
        names = {t["function"]["name"] for t in server.requests[0].tools}
        assert names == {"lookup_order", "broken"}
        await session.close()


async def test_interrupt_cancels_the_tool_loop_mid_tool():
    gate = asyncio.Event()
    async with FakeOpenAIServer([
        Reply.tools(ToolCallSpec("lookup_order", {"order_id": "7"})),
        Reply.text("never said"),
    ]) as server:
        agent = OrderAgent(server.url, gate)
        session, out = await start(agent)
        await asyncio.wait_for(agent.in_tool.wait(), 5)
        await session.deliver(SDKSystemControlInterruptEvent())
        await out.wait_for(lambda e: e.type == "agent.llm.response.end")
        gate.set()
        assert len(server.requests) == 1  # the model was never asked to continue
        assert not any(e.type == "agent.llm.response.chunk" for e in out.events)
        await session.close()
