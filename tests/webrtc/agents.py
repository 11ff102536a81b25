"""The agent the WebRTC tests and the soak talk to: the demo agent with a short greeting."""

from __future__ import annotations

from agent.session import AgentSession
from gateway.demo import DemoAgent

SHORT_GREETING = "Hello, how can I help you?"


class ShortGreeting(DemoAgent):
    async def on_event(self, event) -> None:
        if event.type == "system.user.joined":
            await self.speak(SHORT_GREETING)


async def short_setup(session: AgentSession) -> None:
    session.add_node(ShortGreeting())
    await session.start()
    await session.wait_until_complete()
