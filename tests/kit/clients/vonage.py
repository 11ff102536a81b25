"""The far end of a Vonage call, as the end-to-end tests play it."""

from __future__ import annotations

import asyncio
import json

from tests.kit.clients.base import CallClient


class VonageClient(CallClient):
    """Vonage Voice API WebSocket: `websocket:connected` text, then binary L16 16 kHz frames.
    The call's end is the socket closing."""

    provider, path, codec, rate = "vonage", "/vonage/stream", "l16", 16000
    report_dropped_marks = False

    async def start(self) -> None:
        await self.send_json({"event": "websocket:connected",
                              "content-type": "audio/l16;rate=16000",
                              "uuid": self.call_id, "from": "447700900000",
                              "to": "447700900001"})

    async def send_audio(self, payload: bytes) -> None:
        await self.ws.send(payload)

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "websocket:dtmf", "digit": digit, "duration": 260})

    async def hangup(self) -> None:
        await self.ws.close()

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "websocket:notify", "payload": {"mark": name}})

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            if len(message) != self.frame_bytes:
                self.problems.append(f"binary message of {len(message)} bytes; Vonage wants "
                                     f"one 20 ms frame ({self.frame_bytes}) per message")
            self._got_audio(message)
            return
        msg = json.loads(message)
        action = msg.get("action")
        if action == "notify":
            self._got_control("mark", msg)
            assert self.far_end is not None
            self.far_end.mark(msg["payload"]["mark"])
        elif action == "clear":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
            task = asyncio.create_task(self.send_json({"event": "websocket:cleared"}))
            self._tasks.append(task)
        else:
            self.problems.append(f"unknown text message {msg!r}")
