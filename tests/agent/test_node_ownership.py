"""A node closes the LLM client its `__init__` made when it stops (the SDK's examples make
one per call that way), and leaves alone a client it was given."""

from __future__ import annotations

from agent.clients.openai import OpenAIClient
from agent.nodes import BackgroundAgentNode, OutputAgentNode
from agent.session import AgentSession

URL = "http://127.0.0.1:9/v1"  # (never asked: no request is made)


class MakesItsOwn(OutputAgentNode):
    def __init__(self) -> None:
        super().__init__(name="own")
        self.llm = OpenAIClient(model="m", base_url=URL)


class Given(OutputAgentNode):
    def __init__(self, llm: OpenAIClient) -> None:
        super().__init__(name="given")
        self.llm = llm


class Helper(BackgroundAgentNode):
    def __init__(self) -> None:
        super().__init__(name="helper")
        self.llm = OpenAIClient(model="m", base_url=URL)


def is_closed(client: OpenAIClient) -> bool:
    assert client._client is not None
    return client._client.is_closed()


async def test_the_session_ending_closes_clients_nodes_made_not_clients_they_were_given():
    shared = OpenAIClient(model="m", base_url=URL)
    try:
        session = AgentSession()
        own, given, helper = MakesItsOwn(), Given(shared), Helper()
        for node in (own, given, helper):
            session.add_node(node)
        await session.start()
        assert not is_closed(own.llm) and not is_closed(helper.llm)
        await session.close()
        assert is_closed(own.llm) and is_closed(helper.llm)
        assert not is_closed(shared)
    finally:
        await shared.aclose()


async def test_a_node_that_never_started_still_closes_its_client():
    node = MakesItsOwn()  # (a setup handler that failed before session.start())
    await node.stop()
    assert is_closed(node.llm)
