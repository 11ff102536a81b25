"""The conversation an output node keeps: a list of chat messages (OpenAI format)."""

from __future__ import annotations

from typing import Any


class ContextManager:
    """Ordered chat messages with the published SDK's methods."""

    def __init__(self) -> None:
        self._messages: list[dict[str, Any]] = []

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self._messages

    def add_message(self, message: dict[str, Any]) -> None:
        self._messages.append(message)

    def add_messages(self, messages: list[dict[str, Any]]) -> None:
        self._messages.extend(messages)

    def set_messages(self, messages: list[dict[str, Any]]) -> None:
        """Replace the whole conversation."""
        self._messages = list(messages)

    def replace_last_assistant(self, content: str) -> bool:
        """Set the newest assistant message to what the caller actually heard (drop it if nothing)."""
        for i in range(len(self._messages) - 1, -1, -1):
            msg = self._messages[i]
            if msg.get("role") == "assistant" and "tool_calls" not in msg:
                if content:
                    msg["content"] = content
                else:
                    del self._messages[i]
                return True
        return False
