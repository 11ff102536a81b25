"""Types shared by LLM clients: tool calls, stream chunks, responses, tool results, errors.

Names and fields follow the published Atoms SDK (`ChatChunk`, `ChatResponse`, `ToolCall`,
`ToolResult`); a few optional fields are added with defaults, so code written for it still works.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass
class ToolCall:
    """One function call requested by the model; `arguments` is the raw JSON string."""

    id: str
    name: str
    arguments: str

    def to_dict(self) -> dict[str, Any]:
        """The call in OpenAI's `tool_calls` entry format."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments decoded from JSON (an empty string means no arguments).

        Raises `ValueError` when they are not a JSON object.
        """
        if not self.arguments or not self.arguments.strip():
            return {}
        value = json.loads(self.arguments)
        if not isinstance(value, dict):
            raise ValueError(f"arguments must be a JSON object, got {type(value).__name__}")
        return value


@dataclass
class ChatChunk:
    """One piece of a streamed answer.

    `content` is the text delta (None when the piece carries none). `tool_calls` is set once,
    on an extra chunk after the model finished, with every call complete (deltas assembled).
    """

    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    finish_reason: str | None = None


@dataclass
class ChatResponse:
    """A complete (non-streamed) answer."""

    content: str | None = None
    tool_calls: list[ToolCall] | None = None
    usage: dict[str, Any] | None = None
    finish_reason: str | None = None


@dataclass
class ToolResult:
    """The outcome of running one tool call, ready to go back to the model."""

    tool_call_id: str
    name: str
    content: str
    is_error: bool = False

    def to_message(self) -> dict[str, Any]:
        """The result as an OpenAI `tool` role message."""
        return {
            "role": "tool",
            "tool_call_id": self.tool_call_id,
            "name": self.name,
            "content": self.content,
        }


def assistant_tool_calls_message(
    tool_calls: list[ToolCall], content: str | None = None
) -> dict[str, Any]:
    """The assistant message that records the model's tool calls in a conversation."""
    return {
        "role": "assistant",
        "content": content,
        "tool_calls": [call.to_dict() for call in tool_calls],
    }


class LLMError(Exception):
    """A chat request failed; the message says why."""


class LLMConfigError(LLMError, ValueError):
    """The client is not configured well enough to make a request (e.g. no API key)."""


class LLMStatusError(LLMError):
    """The server answered with an HTTP error status."""

    def __init__(self, message: str, status_code: int, body: Any = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.body = body


class LLMConnectionError(LLMError):
    """The server could not be reached, or the connection failed before an answer began."""


class LLMTimeoutError(LLMConnectionError):
    """The server took longer than the configured timeout."""


class LLMStreamError(LLMError):
    """A streamed answer broke off before the model finished."""
