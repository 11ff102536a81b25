"""The far end of a Twilio call, as the end-to-end tests play it."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

from tests.kit.clients.base import CallClient


class TwilioClient(CallClient):
    """Twilio Media Streams (bidirectional `<Connect><Stream>`), mu-law 8 kHz."""

    provider, path, codec, rate = "twilio", "/twilio/stream", "pcmu", 8000

    def __init__(self, *args: Any, params: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.account_sid = "AC" + uuid.uuid4().hex
        self.params = params or {"From": "+15550001111", "To": "+15550002222"}
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send_json({
            "event": "start", "sequenceNumber": self.seq(), "streamSid": self.stream_sid,
            "start": {
                "accountSid": self.account_sid, "streamSid": self.stream_sid,
                "callSid": self.call_id, "tracks": ["inbound"],
                "customParameters": self.params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequenceNumber": self.seq(), "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": str(self._chunk),
                      "timestamp": str(20 * (self._chunk - 1)), "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "streamSid": self.stream_sid,
                              "sequenceNumber": self.seq(),
                              "dtmf": {"track": "inbound_track", "digit": digit}})

    async def hangup(self) -> None:
        await self.send_json({"event": "stop", "sequenceNumber": self.seq(),
                              "streamSid": self.stream_sid,
                              "stop": {"accountSid": self.account_sid, "callSid": self.call_id}})

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "mark", "sequenceNumber": self.seq(),
                              "streamSid": self.stream_sid, "mark": {"name": name}})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Twilio accepts only JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if msg.get("streamSid") != self.stream_sid:
            self.problems.append(f"{event}: streamSid {msg.get('streamSid')!r} is not ours")
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
