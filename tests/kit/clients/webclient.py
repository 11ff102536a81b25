"""The far end of a web client (/ws) call, as the end-to-end tests play it."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.kit.clients.base import CallClient


class WebClient(CallClient):
    """The `/ws` web client: JSON `start` with a sample rate, binary PCM16, JSON events."""

    provider, path, codec, rate = "web", "/ws", "l16", 24000

    def __init__(self, *args: Any, token: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.started = asyncio.Event()
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        await self.send_json({"type": "start", "sample_rate": self.rate,
                              "context": {"page": "e2e"}})
        await asyncio.wait_for(self.started.wait(), 10)

    async def send_audio(self, payload: bytes) -> None:
        await self.ws.send(payload)

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"type": "dtmf", "digit": digit})

    async def hangup(self) -> None:
        await self.send_json({"type": "hangup"})

    async def mark_played(self, name: str) -> None:  # the web protocol has no marks
        return None

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._got_audio(message)
            return
        msg = json.loads(message)
        kind = msg.get("type")
        if kind == "started":
            self.call_id = msg["call_id"]
            if msg.get("sample_rate") != self.rate:
                self.problems.append(f"started at {msg.get('sample_rate')}, asked {self.rate}")
            self.started.set()
        elif kind == "clear":
            self._got_control("clear", msg)
        elif kind == "end":
            self._got_control("end", msg)
        else:
            self.events.append(msg)
            self._got_control("event", msg)
