"""The far end of a Plivo call, as the end-to-end tests play it."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from typing import Any

from tests.kit.clients.base import CallClient


class PlivoClient(CallClient):
    """Plivo bidirectional audio stream, audio/x-l16 at 16 kHz. No `connected`; the call's
    end is the socket closing."""

    provider, path, codec, rate = "plivo", "/plivo/stream", "l16", 16000
    report_dropped_marks = False

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_id = str(uuid.uuid4())
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({
            "event": "start", "sequenceNumber": int(self.seq()),
            "start": {
                "callId": self.call_id, "streamId": self.stream_id,
                "accountId": "MA" + uuid.uuid4().hex[:18].upper(), "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000},
            },
            "extra_headers": "crm=e2e;lang=en",
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequenceNumber": int(self.seq()), "streamId": self.stream_id,
            "media": {"track": "inbound", "timestamp": str(20 * (self._chunk - 1)),
                      "chunk": self._chunk, "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "sequenceNumber": int(self.seq()),
                              "streamId": self.stream_id,
                              "dtmf": {"track": "inbound", "digit": digit}})

    async def hangup(self) -> None:
        await self.ws.close()

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "playedStream", "sequenceNumber": int(self.seq()),
                              "streamId": self.stream_id, "name": name})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Plivo expects JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if event == "playAudio":
            media = msg["media"]
            if media.get("contentType") != "audio/x-l16" or media.get("sampleRate") != 16000:
                self.problems.append(f"playAudio format {media.get('contentType')!r} "
                                     f"{media.get('sampleRate')!r} is not the call's")
            self._got_audio(base64.b64decode(media["payload"], validate=True))
        elif event == "checkpoint":
            self._got_control("mark", msg)
            if msg.get("streamId") != self.stream_id:
                self.problems.append("checkpoint for another stream")
            assert self.far_end is not None
            self.far_end.mark(msg["name"])
        elif event == "clearAudio":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
            task = asyncio.create_task(self.send_json({
                "event": "clearedAudio", "sequenceNumber": int(self.seq()),
                "streamId": self.stream_id}))
            self._tasks.append(task)
        else:
            self.problems.append(f"unknown event {event!r}")
