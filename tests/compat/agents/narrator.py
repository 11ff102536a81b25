"""Talks at length as soon as the caller joins: a greeting said with `speak`, then a long
story streamed as an LLM response a few words at a time, as a slow model streams a reply
(a test kills this agent's server in the middle of it).

Written for smallestai 4.4.0.
"""

import asyncio

from smallestai.atoms.agent.events import (
    SDKAgentLLMResponseChunkEvent,
    SDKAgentLLMResponseEndEvent,
    SDKAgentLLMResponseStartEvent,
    SDKEvent,
)
from smallestai.atoms.agent.nodes import OutputAgentNode
from smallestai.atoms.agent.session import AgentSession

GREETING = "Welcome to the story line."
STORY = (
    "Once upon a time there was a lighthouse keeper who lived by the sea. "
    "Every night he climbed the stairs and lit the great lamp for the ships. "
    "One stormy evening the lamp went dark and the boats could not find the harbour. "
    "So he gathered every lantern in the village and lined them along the cliffs. "
    "One by one the boats came home, and the village never forgot that night."
)
WORDS_PER_S = 4.0


class Narrator(OutputAgentNode):
    def __init__(self):
        super().__init__(name="narrator")

    async def process_event(self, event: SDKEvent):
        await super().process_event(event)
        if event.type == "system.user.joined":
            await self.speak(GREETING)
            await self.send_event(SDKAgentLLMResponseStartEvent())
            for word in STORY.split():
                await self.send_event(SDKAgentLLMResponseChunkEvent(text=word + " "))
                await asyncio.sleep(1 / WORDS_PER_S)
            await self.send_event(SDKAgentLLMResponseEndEvent())

    async def generate_response(self):
        yield "I only tell the one story."


async def setup(session: AgentSession):
    session.add_node(Narrator())
    await session.start()
    await session.wait_until_complete()
