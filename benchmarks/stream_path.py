"""CPU of a provider stream's own per-message path, in microseconds per 20 ms message.

    taskset -c 1 .venv/bin/python benchmarks/stream_path.py

Outbound: `MediaStreamTransport.send_payload` (a Twilio audio message, a mark every 5th)
on a real aiohttp WebSocket on 127.0.0.1, read by a raw socket in another process.
Inbound: one Twilio media message parsed as the stream's handler parses it (the protocol,
the audio's payload taken out). Neither includes the media tick, the voice loop or
aiohttp's receiving. Each figure is the best of 5 runs of 20,000 messages, so other
processes on the host add little; compare commits by running this file in each.
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.protocols.common import AudioIn  # noqa: E402
from gateway.protocols.twilio import TwilioProtocol  # noqa: E402
from gateway.transports.media_stream import MediaStreamTransport  # noqa: E402

SID = "MZ" + "a" * 32
START = {"event": "start", "sequenceNumber": "1", "streamSid": SID,
         "start": {"streamSid": SID, "accountSid": "AC" + "0" * 32, "callSid": "CA" + "1" * 32,
                   "tracks": ["inbound"], "customParameters": {},
                   "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                   "channels": 1}}}
MEDIA = json.dumps({"event": "media", "sequenceNumber": "3", "streamSid": SID,
                    "media": {"track": "inbound", "chunk": "1", "timestamp": "20",
                              "payload": base64.b64encode(bytes(range(160))).decode()}})
N, RUNS = 20000, 5
READER = """
import base64, os, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /s HTTP/1.1\\r\\nHost: x\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\n"
          b"Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)) +
          b"\\r\\nSec-WebSocket-Version: 13\\r\\n\\r\\n")
while s.recv(1 << 16):
    pass
"""


class PlayingCall:
    """What the transport asks of its call for marks: the position of what was sent."""

    closed = False

    def __init__(self) -> None:
        self.ms = 0.0

    def play_position(self) -> tuple[str, float]:
        self.ms += 20
        return "u1", self.ms

    def at_play_boundary(self) -> bool:
        return False


def best_us(run: Any) -> float:
    best = float("inf")
    for _ in range(RUNS):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best / N * 1e6


def inbound(proto: Any) -> float:
    """As `_serve_media_stream` takes a media message (bare bytes where the protocol has
    `receive_audio`; `AudioIn` events before)."""
    fast = getattr(proto, "receive_audio", None)
    inbox: list[bytes] = []

    def run() -> None:
        inbox.clear()
        for _ in range(N):
            if fast is not None:
                got = fast(MEDIA)
                if isinstance(got, bytes):
                    inbox.append(got)
                    continue
                events = got
            else:
                events = proto.receive_text(MEDIA)
            for ev in events:
                if isinstance(ev, AudioIn):
                    inbox.append(ev.payload)
    return best_us(run)


async def main() -> None:
    result: asyncio.Future[tuple[float, float]] = asyncio.get_running_loop().create_future()

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        proto = TwilioProtocol()
        proto.receive_text(json.dumps(START))
        extra = ({"socket": request.transport}  # (commits before the direct writes lack it)
                 if "socket" in inspect.signature(MediaStreamTransport).parameters else {})
        transport = MediaStreamTransport(ws, proto, lambda: False, **extra)
        transport.call = PlayingCall()  # type: ignore[assignment]
        payload = bytes(160)
        best = float("inf")
        for _ in range(RUNS):
            t0 = time.process_time()
            for _ in range(N):
                await transport.send_payload(payload)
            best = min(best, time.process_time() - t0)
            await asyncio.sleep(0.2)  # (the reader catches up)
        result.set_result((best / N * 1e6, inbound(proto)))
        await asyncio.sleep(3600)  # until the runner is cleaned up
        return ws

    app = web.Application()
    app.router.add_get("/s", stream)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    reader = subprocess.Popen([sys.executable, "-c", READER, str(port)])
    try:
        out, inn = await result
    finally:
        reader.kill()
        reader.wait()
    await runner.cleanup()
    print(f"outbound: {out:.2f} us per audio message (a mark every 5th); "
          f"inbound: {inn:.2f} us per media message")


if __name__ == "__main__":
    uvloop.run(main())
