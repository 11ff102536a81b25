"""The built-in demo agent: works offline, no keys.

It greets the caller, tells the time, tells a long story to talk over, transfers on
"operator" and hangs up on "goodbye". With `OPENAI_API_KEY` or `ATOMS_LLM_BASE_URL`
set, unknown requests go to the LLM instead.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator

from agent.events import SDKAgentEndCallEvent, SDKAgentTransferConversationEvent, SDKEvent
from agent.nodes import OutputAgentNode
from agent.session import AgentSession

log = logging.getLogger(__name__)

GREETING = (
    "Hello, and thanks for calling the Atoms demo line. "
    "You can ask me what time it is, ask me to tell you a story, "
    "say operator to reach a person, or say goodbye to end the call."
)
STORY = (
    "Once upon a time, in a small village by the sea, there lived an old lighthouse keeper. "
    "Every night he climbed the long spiral stairs to light the great lamp. "
    "Ships from far away lands followed its beam safely into the harbour. "
    "One stormy evening the lamp went dark, and the keeper had to find a way to guide "
    "the fishing boats home before the waves grew too high. "
    "He gathered every lantern in the village and lined them along the cliffs. "
    "One by one, the boats found their way home, and the village never forgot that night."
)
# Phrases the offline recogniser listens for (a grammar is exact on synthetic speech).
PHRASES = [
    "what time is it",
    "tell me a story",
    "goodbye",
    "operator",
    "hello",
    "thank you",
    "yes",
    "no",
]
# Speech that is none of the phrases: the recogniser's grammar has a garbage path
# (`media.stt.pocketsphinx`, measured in benchmarks/demo_grammar.py) that such speech takes
# instead of being forced onto the nearest phrase, and the turn then reaches the agent as
# UNRECOGNISED, which it answers with NOT_CAUGHT.
GARBAGE = "words"
UNRECOGNISED = "[unrecognised speech]"
NOT_CAUGHT = "Sorry, I didn't catch that."
OPERATOR_NUMBER = os.environ.get("ATOMS_DEMO_OPERATOR", "+15550100")


def canned_reply(text: str) -> str | None:
    """The demo's answer to a recognised phrase, or None."""
    if text.strip() == UNRECOGNISED:
        return (f"{NOT_CAUGHT} You can ask me what time it is, ask for a story, "
                "say operator, or say goodbye.")
    t = text.lower()
    if "time" in t:
        return f"It is {time.strftime('%H:%M')}."
    if "story" in t:
        return STORY
    if "goodbye" in t or t.strip() == "bye":
        return "Goodbye, and thanks for calling."
    if "operator" in t:
        return "Transferring you to an operator now."
    if "hello" in t:
        return "Hello! How can I help you today?"
    if "thank" in t:
        return "You are welcome."
    return None


class DemoAgent(OutputAgentNode):
    """Greets, answers a few phrases, ends or transfers the call."""

    def __init__(self) -> None:
        super().__init__(name="demo-agent")
        self.context.add_message({
            "role": "system",
            "content": "You are a friendly, brief phone agent. Answer in one or two sentences.",
        })
        self.llm = None
        if os.environ.get("OPENAI_API_KEY") or os.environ.get("ATOMS_LLM_BASE_URL"):
            from agent.clients.openai import OpenAIClient

            self.llm = OpenAIClient()

    async def on_event(self, event: SDKEvent) -> None:
        if event.type == "system.user.joined":
            await self.speak(GREETING)

    async def generate_response(self) -> AsyncIterator[str]:
        user = [m for m in self.context.messages if m.get("role") == "user"]
        heard = str(user[-1]["content"]) if user else ""
        reply = canned_reply(heard)
        if reply is None and self.llm is not None:
            async for chunk in self.llm.chat(self.context.messages, stream=True):
                if chunk.content:
                    yield chunk.content
            return
        if reply is None:
            reply = (f"I heard: {heard}. " if heard.strip() else "Sorry, I did not catch that. ")
            reply += "Try asking for the time or for a story."
        yield reply
        lowered = heard.lower()
        if "goodbye" in lowered:
            await self.send_event(SDKAgentEndCallEvent())
        elif "operator" in lowered:
            await self.send_event(SDKAgentTransferConversationEvent(
                transfer_call_number=OPERATOR_NUMBER))


async def setup(session: AgentSession) -> None:
    """Setup handler of the demo app."""
    session.add_node(DemoAgent())
    await session.start()
    await session.wait_until_complete()
