"""An output node that keeps its conversation in `self.context` and reacts to events in its
own `process_event` (4.4.0 has no `on_event`; 5.x and ours add it). It reads the call's
variables from the `system.init` the session received, changes its tone when the platform
updates its settings, and answers from the conversation so far.

Written for smallestai 4.4.0.
"""

from smallestai.atoms.agent.events import (
    SDKAgentTranscriptUpdateEvent,
    SDKEvent,
    SDKSystemUpdateOutputAgentSettingsEvent,
)
from smallestai.atoms.agent.nodes import OutputAgentNode
from smallestai.atoms.agent.session import AgentSession

CONTEXTS: list[list[dict]] = []  # the context at each generation


class Receptionist(OutputAgentNode):
    def __init__(self, customer: str, plan: str):
        super().__init__(name="receptionist")
        self.customer = customer
        self.context.add_messages([
            {"role": "system", "content": "You are a receptionist."},
            {"role": "system", "content": f"The caller is {customer} on the {plan} plan."},
        ])
        self.tone = "plain"

    async def process_event(self, event: SDKEvent):
        await super().process_event(event)
        if event.type == "system.user.joined":
            await self.speak(f"Good day {self.customer}, reception here.")
        elif isinstance(event, SDKSystemUpdateOutputAgentSettingsEvent):
            self.tone = getattr(self.settings, "tone", self.tone)
        elif isinstance(event, SDKAgentTranscriptUpdateEvent) and event.role == "assistant":
            # the platform reports what the caller actually heard
            await self.speak(f"(heard {len(event.content.split())} words)")

    async def generate_response(self):
        CONTEXTS.append([dict(m) for m in self.context.messages])
        turns = [m for m in self.context.messages if m["role"] in ("user", "assistant")]
        last = turns[-1]["content"] if turns else ""
        prefix = "Certainly! " if self.tone == "cheerful" else ""
        yield f"{prefix}Message {len(turns)} of our talk was: "
        yield last


async def setup(session: AgentSession):
    variables = session._init_event.session_context.initial_variables
    session.add_node(Receptionist(variables.get("customer", "caller"),
                                  variables.get("plan", "basic")))
    await session.start()
    await session.wait_until_complete()
