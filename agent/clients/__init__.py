"""LLM clients for agent nodes: an OpenAI-compatible chat client and its shared types."""

from agent.clients.openai import ChatStream, OpenAIClient, ToolCallAssembler
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
