"""OutputAgentNode: the node that talks to the caller.

On `system.llm.request` it streams the user's `generate_response()` as
`agent.llm.response.start` / `.chunk` / `.end`; `speak(text)` emits `agent.speak`.
It keeps the conversation in `self.context`; an interrupt cancels generation at once,
and an assistant transcript (what the caller actually heard) replaces the reply it
reports on (or is appended, for speech the node did not generate itself). After `agent.end_call` or `agent.transfer_call` it stops generating.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from agent.context import ContextManager
from agent.events import (
    OutputAgentSettings,
    SDKAgentEndCallEvent,
    SDKAgentLLMResponseChunkEvent,
    SDKAgentLLMResponseEndEvent,
    SDKAgentLLMResponseStartEvent,
    SDKAgentSpeakEvent,
    SDKAgentTranscriptUpdateEvent,
    SDKAgentTransferConversationEvent,
    SDKEvent,
    SDKSystemLLMRequestEvent,
    SDKSystemUpdateOutputAgentSettingsEvent,
)
from agent.nodes.base import Node

log = logging.getLogger(__name__)

_HANDOFF = (SDKAgentEndCallEvent, SDKAgentTransferConversationEvent)


class OutputAgentNode(Node):
    """Base class for agents that produce what the caller hears. Implement `generate_response`."""

    error_severity = "fatal"

    def __init__(self, name: str | None = None, is_interruptible: bool = True) -> None:
        super().__init__(name, is_interruptible)
        self.settings = OutputAgentSettings()
        self.context = ContextManager()
        self._handoff_started = False
        self._unconfirmed_reply = False  # our last reply awaits the gateway's "what was heard"

    llm: Any = None  # an LLM client; when set, the default generate_response uses it
    tools: Any = None  # a ToolRegistry offered to `llm`
    max_tool_rounds = 5

    async def generate_response(self) -> AsyncIterator[str]:
        """Yield the reply's text chunks (override). The default streams `self.llm` with
        `self.tools`, and says nothing when there is no `llm`."""
        if self.llm is None:
            return
        async for text in self.respond_with_tools(self.llm, self.tools):
            yield text

    async def respond_with_tools(self, llm: Any, tools: Any = None) -> AsyncIterator[str]:
        """The tool loop: stream the model; when it asks for tools, run them, put the call
        and the results into the context and let the model continue. An interrupt cancels
        it at any step."""
        schemas = tools.get_schemas() if tools is not None and len(tools) else None
        for _ in range(self.max_tool_rounds):
            calls: list[Any] = []
            async for chunk in llm.chat(self.context.messages, stream=True, tools=schemas):
                if chunk.content:
                    yield chunk.content
                if chunk.tool_calls:
                    calls.extend(chunk.tool_calls)
            if not calls or tools is None:
                return
            from agent.clients.types import assistant_tool_calls_message

            self.context.add_message(assistant_tool_calls_message(calls))
            for result in await tools.execute(calls):
                self.context.add_message(result.to_message())
            if self._handoff_started:  # a tool ended or transferred the call
                return
        log.warning("%s: the model still wants tools after %d rounds; stopping",
                    self.name, self.max_tool_rounds)

    async def on_event(self, event: SDKEvent) -> None:
        """Extension point: runs for every event after the framework's own routing."""

    async def speak(self, text: str) -> None:
        """Say `text` to the caller."""
        await self.send_event(SDKAgentSpeakEvent(text=text))

    async def send_event(self, event: SDKEvent) -> None:
        if isinstance(event, _HANDOFF):
            self._handoff_started = True
        await super().send_event(event)

    async def process_event(self, event: SDKEvent) -> None:
        await self._route(event)
        await self.on_event(event)
        await self.send_event(event)

    async def _route(self, event: SDKEvent) -> None:
        if isinstance(event, SDKSystemLLMRequestEvent):
            if self._handoff_started:
                return
            if event.messages:
                self._sync_messages(event.messages)
            await self._generate()
        elif isinstance(event, SDKAgentTranscriptUpdateEvent):
            if event.role == "assistant" and self._unconfirmed_reply:
                self.context.replace_last_assistant(event.content)
                self._unconfirmed_reply = False
            else:
                self.context.add_message({"role": event.role, "content": event.content})
        elif isinstance(event, SDKSystemUpdateOutputAgentSettingsEvent):
            for key, value in event.settings.items():
                setattr(self.settings, key, value)

    def _sync_messages(self, messages: list[dict[str, Any]]) -> None:
        """The platform's conversation replaces ours; our own system prompt is kept."""
        conversation = [m for m in messages if m.get("role") != "system"]
        if not conversation:
            return
        system = [m for m in self.context.messages if m.get("role") == "system"]
        if not system:
            system = [m for m in messages if m.get("role") == "system"]
        self.context.set_messages(system + conversation)

    async def _generate(self) -> None:
        reply: list[str] = []
        await self.send_event(SDKAgentLLMResponseStartEvent())
        try:
            async for chunk in self.generate_response():
                if chunk:
                    reply.append(chunk)
                    await self.send_event(SDKAgentLLMResponseChunkEvent(text=chunk))
        except Exception as exc:
            await self._report_error(
                exc, f"{type(exc).__name__} in {self.name}.generate_response: {exc}"
            )
        finally:
            # Interrupted or not, the context holds what was generated; the gateway's
            # assistant transcript later trims it to what the caller actually heard.
            if reply:
                self.context.add_message({"role": "assistant", "content": "".join(reply)})
                self._unconfirmed_reply = True
            await self.send_event(SDKAgentLLMResponseEndEvent())
