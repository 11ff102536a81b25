"""An agent written the way the published SDK documents it, answering through a local
OpenAI-compatible server."""

import asyncio

from agent.clients.openai import OpenAIClient
from agent.events import SDKAgentTranscriptUpdateEvent, SDKSystemLLMRequestEvent
from agent.nodes import OutputAgentNode
from agent.session import AgentSession
from tests.kit.fakes import Collector
from tests.kit.servers.openai_server import FakeOpenAIServer, Reply


class SupportAgent(OutputAgentNode):
    def __init__(self, base_url: str):
        super().__init__(name="support")
        self.llm = OpenAIClient(model="fake-gpt", base_url=base_url, max_retries=0)
        self.context.add_message({"role": "system", "content": "You are a helpful agent."})

    async def generate_response(self):
        async for chunk in self.llm.chat(self.context.messages, stream=True):
            if chunk.content:
                yield chunk.content


async def test_published_style_agent_answers_llm_request():
    async with FakeOpenAIServer([Reply.text("Your order ships tomorrow.", chunk_size=5),
                                 Reply.error(500)]) as server:
        session = AgentSession()
        agent = SupportAgent(server.url)
        session.add_node(agent)
        out = Collector()
        session.set_output(out)
        await session.start()
        await session.deliver(SDKAgentTranscriptUpdateEvent(role="user", content="Where is it?"))
        await session.deliver(SDKSystemLLMRequestEvent())
        await out.wait_for(lambda e: e.type == "agent.llm.response.end")
        chunks = [e.text for e in out.events if e.type == "agent.llm.response.chunk"]
        assert len(chunks) > 1 and "".join(chunks) == "Your order ships tomorrow."
        sent = server.requests[0].messages
        assert sent[0]["role"] == "system" and sent[-1] == {"role": "user", "content": "Where is it?"}

        # the server fails on the next turn: a fatal agent.error, the response still ends
        n = len(out.events)
        await session.deliver(SDKSystemLLMRequestEvent())
        err = await out.wait_for(lambda e: e.type == "agent.error")
        await out.wait_for(lambda e: e.type == "agent.llm.response.end"
                           and any(x is e for x in out.events[n:]))
        assert err.severity == "fatal" and "500" in err.message
        await session.close()
        await asyncio.sleep(0)
