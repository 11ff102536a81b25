"""An output node with tools: `@function_tool` methods found by `ToolRegistry.discover`,
an `OpenAIClient` streaming from an OpenAI-compatible server (its URL comes with the call's
variables), and the tool loop written out in `generate_response` as 4.4.0 requires. The
`end_call` tool hangs up.

Written for smallestai 4.4.0.
"""

import json

from smallestai.atoms.agent.clients.openai import OpenAIClient
from smallestai.atoms.agent.events import SDKAgentEndCallEvent
from smallestai.atoms.agent.nodes import OutputAgentNode
from smallestai.atoms.agent.session import AgentSession
from smallestai.atoms.agent.tools import ToolRegistry, function_tool

STOCK = {"boots": 3, "sandals": 0}
TOOL_RESULTS: list[dict] = []  # tool messages as they went into the context


class Shopkeeper(OutputAgentNode):
    def __init__(self, llm_url: str):
        super().__init__(name="shopkeeper")
        self.llm = OpenAIClient(model="fake-gpt", api_key="sk-test", base_url=llm_url)
        self.registry = ToolRegistry()
        self.registry.discover(self)
        self.context.add_message({"role": "system", "content": "You run a shoe shop."})

    @function_tool()
    def check_stock(self, item: str) -> dict:
        """Look up how many of an item are in stock.

        Args:
            item: The product name, e.g. boots.
        """
        if item not in STOCK:
            raise KeyError(f"no such item: {item}")
        return {"item": item, "count": STOCK[item]}

    @function_tool()
    async def end_call(self) -> str:
        """End the call when the customer says goodbye."""
        await self.send_event(SDKAgentEndCallEvent())
        return "call ended"

    async def generate_response(self):
        for _ in range(4):
            calls = []
            stream = await self.llm.chat(messages=self.context.messages, stream=True,
                                         tools=self.registry.get_schemas())
            async for chunk in stream:
                if chunk.content:
                    yield chunk.content
                if chunk.tool_calls:
                    calls.extend(chunk.tool_calls)
            if not calls:
                return
            self.context.add_message({"role": "assistant", "content": None,
                                      "tool_calls": [c.to_dict() for c in calls]})
            for result in await self.registry.execute(calls):
                message = result.to_message()
                TOOL_RESULTS.append({"name": message["name"],
                                     "content": _canonical(message["content"])})
                self.context.add_message(message)


def _canonical(content: str):
    try:
        return json.loads(content)
    except ValueError:
        return content


async def setup(session: AgentSession):
    variables = session._init_event.session_context.initial_variables
    session.add_node(Shopkeeper(variables.get("llm_url")))
    await session.start()
    await session.wait_until_complete()
