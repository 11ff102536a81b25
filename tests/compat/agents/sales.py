"""The SDK's reference example: an OutputAgentNode `SalesAgent` behind a `StatsTracker`
Node, with session hooks on system.control.interrupt, system.user_joined and agent.speak.

Written for smallestai 4.4.0 (`smallestai.atoms.agent`). Module-level lists record what the
nodes and hooks saw, for the tests.
"""

import asyncio

from smallestai.atoms.agent.events import SDKEvent
from smallestai.atoms.agent.nodes import Node, OutputAgentNode
from smallestai.atoms.agent.server import AtomsApp
from smallestai.atoms.agent.session import AgentSession

GREETING = ("Welcome to the shoe shop. Today every pair of boots is half price, "
            "and sandals are two for one.")
SEEN: list[str] = []  # event types the tracker forwarded
HOOKS: list[str] = []  # what the session hooks saw
RECEIVED: list[str] = []  # event types the output node processed


class SalesAgent(OutputAgentNode):
    def __init__(self):
        super().__init__(name="sales")
        self.context.add_message({"role": "system", "content": "You sell shoes."})

    async def process_event(self, event: SDKEvent):
        RECEIVED.append(event.type)
        await super().process_event(event)
        if event.type == "system.user.joined":
            await self.speak(GREETING)

    async def generate_response(self):
        said = [m["content"] for m in self.context.messages if m["role"] == "user"]
        last = said[-1] if said else ""
        if "story" in last:
            yield "Once upon a time "
            await asyncio.sleep(30)  # a long answer, to be talked over
            yield "there was a shoe."
            return
        yield "You said: "
        yield last


class StatsTracker(Node):
    def __init__(self):
        super().__init__(name="tracker")
        self.counts: dict[str, int] = {}

    async def process_event(self, event: SDKEvent):
        SEEN.append(event.type)
        self.counts[event.type] = self.counts.get(event.type, 0) + 1
        await self.send_event(event)


async def setup(session: AgentSession):
    agent = SalesAgent()
    tracker = StatsTracker()
    session.add_node(tracker)
    session.add_node(agent)
    session.add_edge(tracker, agent)

    @session.on_event("system.control.interrupt")
    async def on_interrupt(session, event):
        HOOKS.append("interrupted")

    @session.on_event("system.user_joined")
    async def welcome(session, event):
        HOOKS.append("joined")

    @session.on_event("agent.speak")
    async def track_speech(session, event):
        HOOKS.append(f"spoke:{event.text}")

    await session.start()
    await session.wait_until_complete()


if __name__ == "__main__":
    AtomsApp(setup_handler=setup).run()
