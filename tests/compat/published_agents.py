"""Agents written against the published SDK (smallestai 4.4.0). Tests run them on the
published SDK and, with imports rewritten, on ours."""

import asyncio

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


SLOW_START_S = 1.5
LATE_WORDS = "These late words must never be heard."


class LateSpeaker(OutputAgentNode):
    def __init__(self):
        super().__init__(name="late")

    async def generate_response(self):
        yield "Too late."


async def slow_starter_setup(session: AgentSession):
    """An agent server that takes SLOW_START_S to get ready (past a short handshake
    timeout), then speaks at once."""
    node = LateSpeaker()
    session.add_node(node)
    await asyncio.sleep(SLOW_START_S)
    await session.start()  # sends agent.ready
    await node.speak(LATE_WORDS)
    await session.wait_until_complete()


class Leaver(OutputAgentNode):
    def __init__(self):
        super().__init__(name="leaver")

    async def generate_response(self):
        yield "Bye."


async def says_goodbye_and_leaves_setup(session: AgentSession):
    """An agent that says goodbye, ends the call and returns from its setup at once: the
    agent server closes the connection right after `agent.end_call`."""
    node = Leaver()
    session.add_node(node)
    await session.start()
    await node.speak("Goodbye.")
    await node.send_event(SDKAgentEndCallEvent())
    await asyncio.sleep(0.5)  # (the session's tasks send both; returning drops the socket)
