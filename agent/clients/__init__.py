"""LLM clients for agent nodes: an OpenAI-compatible chat client and its shared types.

The client classes load the `openai` package on first use, so importing the types (as
`agent.tools` does) stays cheap.
"""

from typing import Any

from agent.clients.types import (
    ChatChunk,
    ChatResponse,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMStatusError,
    LLMStreamError,
    LLMTimeoutError,
    ToolCall,
    ToolResult,
    assistant_tool_calls_message,
)

_LAZY = {"ChatStream", "OpenAIClient", "ToolCallAssembler"}

__all__ = [
    "ChatChunk",
    "ChatResponse",
    "ChatStream",
    "LLMConfigError",
    "LLMConnectionError",
    "LLMError",
    "LLMStatusError",
    "LLMStreamError",
    "LLMTimeoutError",
    "OpenAIClient",
    "ToolCall",
    "ToolCallAssembler",
    "ToolResult",
    "assistant_tool_calls_message",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from agent.clients import openai as module

        return getattr(module, name)
    raise AttributeError(f"module 'agent.clients' has no attribute {name!r}")
