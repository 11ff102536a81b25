"""A multi-node graph: a `Redactor` node masks digits in what the user says, then fans out
to a `Concierge` output node (answers) and a `NoteTaker` background node (takes notes,
and speaks up once the user stops speaking about a complaint).

    Root -> Redactor -> Concierge -> Sink
                     -> NoteTaker -> Sink

Written for smallestai 4.4.0.
"""

import re

from smallestai.atoms.agent.events import (
    SDKAgentSpeakEvent,
    SDKAgentTranscriptUpdateEvent,
    SDKEvent,
)
from smallestai.atoms.agent.nodes import BackgroundAgentNode, Node, OutputAgentNode
from smallestai.atoms.agent.session import AgentSession

NOTES: list[str] = []  # what the note taker wrote down
RECEIVED: list[str] = []  # event types the note taker saw
FROM_PEER: list[str] = []  # event types the session received (4.4.0's one session hook)


class Redactor(Node):
    def __init__(self):
        super().__init__(name="redactor")

    async def process_event(self, event: SDKEvent):
        if isinstance(event, SDKAgentTranscriptUpdateEvent) and event.role == "user":
            event = SDKAgentTranscriptUpdateEvent(
                role="user", content=re.sub(r"\d", "#", event.content))
        await self.send_event(event)


class Concierge(OutputAgentNode):
    def __init__(self):
        super().__init__(name="concierge")

    async def process_event(self, event: SDKEvent):
        await super().process_event(event)
        if event.type == "system.user.joined":
            await self.speak("Concierge desk, how can I help?")

    async def generate_response(self):
        user = [m["content"] for m in self.context.messages if m["role"] == "user"]
        yield f"Noted {len(user)} request"
        yield "s" if len(user) != 1 else ""
        yield f", the last one: {user[-1]}" if user else "."


class NoteTaker(BackgroundAgentNode):
    def __init__(self):
        super().__init__(name="notes")

    async def process_event(self, event: SDKEvent):
        RECEIVED.append(event.type)
        if isinstance(event, SDKAgentTranscriptUpdateEvent) and event.role == "user":
            NOTES.append(event.content)
        elif event.type == "system.user.stopped_speaking" and NOTES and "complaint" in NOTES[-1]:
            await self.send_event(SDKAgentSpeakEvent(text="I have noted your complaint."))


async def setup(session: AgentSession):
    redactor, concierge, notes = Redactor(), Concierge(), NoteTaker()
    session.add_node(redactor)
    session.add_node(concierge)
    session.add_node(notes)
    session.add_edge(redactor, concierge)
    session.add_edge(redactor, notes)

    @session.on_event("on_event_received")
    async def received(session, event):
        FROM_PEER.append(event.type)

    await session.start()
    await session.wait_until_complete()
