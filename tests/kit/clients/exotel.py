"""The far end of a Exotel call, as the end-to-end tests play it."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from tests.kit.clients.base import CallClient


class ExotelClient(CallClient):
    """Exotel Voicebot applet (AgentStream), raw 16-bit PCM at 8 kHz."""

    provider, path, codec, rate = "exotel", "/exotel/stream", "l16", 8000

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({"event": "connected"})
        await self.send_json({
            "event": "start", "sequence_number": self.seq(), "stream_sid": self.stream_sid,
            "start": {
                "stream_sid": self.stream_sid, "call_sid": self.call_id,
                "account_sid": "exotel-e2e", "from": "+919876543210", "to": "+918047491899",
                "custom_parameters": {"key1": "value1"},
                "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000",
                                 "bit_rate": "16"},
            },
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequence_number": self.seq(), "stream_sid": self.stream_sid,
            "media": {"chunk": str(self._chunk), "timestamp": str(20 * (self._chunk - 1)),
                      "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "sequence_number": self.seq(),
                              "stream_sid": self.stream_sid,
                              "dtmf": {"digit": digit, "duration": "100"}})

    async def hangup(self) -> None:
        await self.send_json({"event": "stop", "sequence_number": self.seq(),
                              "stream_sid": self.stream_sid,
                              "stop": {"call_sid": self.call_id, "account_sid": "exotel-e2e",
                                       "reason": "callended"}})

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "mark", "sequence_number": self.seq(),
                              "stream_sid": self.stream_sid, "mark": {"name": name}})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Exotel expects JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if msg.get("stream_sid") != self.stream_sid:
            self.problems.append(f"{event}: stream_sid {msg.get('stream_sid')!r} is not ours")
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
