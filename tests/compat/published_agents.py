"""Agents written against the published SDK (smallestai 4.4.0). Tests run them on the
published SDK and, with imports rewritten, on ours."""

from smallestai.atoms.agent.events import SDKAgentEndCallEvent
from smallestai.atoms.agent.nodes import OutputAgentNode
from smallestai.atoms.agent.session import AgentSession


class GreeterAgent(OutputAgentNode):
    def __init__(self):
        super().__init__(name="greeter")

    async def process_event(self, event):
        await super().process_event(event)
        if event.type == "system.user.joined":
            await self.speak("Hello from the agent server.")

    async def generate_response(self):
        last = [m for m in self.context.messages if m["role"] == "user"]
        text = last[-1]["content"] if last else ""
        yield "You said "
        yield text + "."
        if "goodbye" in text:
            await self.send_event(SDKAgentEndCallEvent())


async def greeter_setup(session: AgentSession):
    session.add_node(GreeterAgent())
    await session.start()
    await session.wait_until_complete()
