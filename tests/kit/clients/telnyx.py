"""The far end of a Telnyx call, as the end-to-end tests play it."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from tests.kit.clients.base import CallClient


class TelnyxClient(CallClient):
    """Telnyx media streaming, bidirectional RTP mode, PCMA 8 kHz."""

    provider, path, codec, rate = "telnyx", "/telnyx/stream", "pcma", 8000

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_id = str(uuid.uuid4())
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({"event": "connected", "version": "1.0.0"})
        await self.send_json({
            "event": "start", "sequence_number": self.seq(), "stream_id": self.stream_id,
            "start": {
                "user_id": str(uuid.uuid4()), "call_control_id": self.call_id,
                "call_session_id": str(uuid.uuid4()), "from": "+15550003333",
                "to": "+15550004444", "client_state": None,
                "custom_parameters": {"campaign": "e2e"},
                "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
            },
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequence_number": self.seq(), "stream_id": self.stream_id,
            "media": {"track": "inbound", "chunk": str(self._chunk),
                      "timestamp": str(20 * (self._chunk - 1)), "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "stream_id": self.stream_id,
                              "occurred_at": "2026-01-01T00:00:00.000000Z",
                              "sequence_number": self.seq(), "dtmf": {"digit": digit}})

    async def hangup(self) -> None:
        await self.send_json({"event": "stop", "sequence_number": self.seq(),
                              "stream_id": self.stream_id,
                              "stop": {"user_id": "u", "call_control_id": self.call_id}})

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "mark", "sequence_number": self.seq(),
                              "stream_id": self.stream_id, "mark": {"name": name}})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Telnyx expects JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if event == "media":
            self._got_audio(base64.b64decode(msg["media"]["payload"], validate=True))
        elif event == "mark":
            self._got_control("mark", msg)
            assert self.far_end is not None
            self.far_end.mark(msg["mark"]["name"])
        elif event == "clear":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
        else:
            self.problems.append(f"unknown event {event!r}")
