"""BackgroundAgentNode: observes events for side work; never interrupted, emits only by choice."""

from __future__ import annotations

from agent.events import SDKEvent
from agent.nodes.base import Node


class BackgroundAgentNode(Node):
    """Override `process_event`. Interrupts reach it but never cancel its work."""

    def __init__(self, name: str | None = None, is_interruptible: bool = False) -> None:
        super().__init__(name, False)

    async def process_event(self, event: SDKEvent) -> None:
        """Observe `event` (override)."""
