"""A local server that speaks Smallest AI's Waves streaming TTS WebSocket, for tests.

`/waves/v1/lightning-v3.1/get_speech/stream` takes `Authorization: Bearer KEY` (401 on
the upgrade otherwise) and, per JSON request `{"voice_id", "text", "sample_rate", ...}`,
answers as the published SDK (`smallestai` 4.4.0) expects: `{"request_id", "status":
"chunk", "data": {"audio": base64}}` messages of 16-bit little-endian PCM at the requested
rate (espeak-ng speech, `piece_ms` each), then `{"request_id", "status": "complete"}`;
a bad request gets `{"status": "error", "message"}`. One connection serves any number of
requests, one after another. Scriptable for failure tests: `error` answers every request
with that message, `cut_after` drops the connection after N chunks, `stall_after` holds
a request after N chunks until `release()` or until the client leaves (`disconnected`
is set), `drop_idle()` closes every connection between requests.

    async with waves_server(api_key="k") as server:
        tts = WavesTTS(api_key="k", url=server.url)

    python -m tests.kit.servers.waves_server --port 8767 --api-key k   # for a gateway in another process
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
from typing import Any

from aiohttp import WSMsgType, web

from tests.kit.servers.local_server import LocalServer, run_forever
from tests.kit.speech import speech

PATH = "/waves/v1/lightning-v3.1/get_speech/stream"
RATES = (8000, 16000, 24000, 44100)


class WavesServer(LocalServer):
    def __init__(self, api_key: str | None = None, *, piece_ms: int = 100,
                 pace: float | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.piece_ms = piece_ms
        self.pace = pace  # None: as fast as possible; 1.0: real time
        self.error: str | None = None
        self.cut_after: int | None = None
        self.stall_after: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.connections = 0
        self.completed = 0
        self.disconnected = asyncio.Event()
        self._open: set[web.WebSocketResponse] = set()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    async def drop_idle(self) -> None:
        """Close every connection (as a server does to idle sockets)."""
        for ws in list(self._open):
            await ws.close()

    def routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self._socket)

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None and \
                request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self._open.add(ws)
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    await ws.send_json({"status": "error", "message": "send JSON text"})
                    continue
                if not await self._request(request, ws, msg.data):
                    break
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        finally:
            self._open.discard(ws)
        if ws.close_code not in (None, 1000):
            self.disconnected.set()
        return ws

    async def _request(self, request: web.Request, ws: web.WebSocketResponse, data: str) -> bool:
        """Answer one request; False when the connection is gone."""
        try:
            body = json.loads(data)
        except json.JSONDecodeError:
            await ws.send_json({"status": "error", "message": "request is not JSON"})
            return True
        self.requests.append(body)
        request_id = f"req-{next(self._ids)}"
        rate = body.get("sample_rate", 24000)
        text = body.get("text")
        if self.error or not body.get("voice_id") or not isinstance(text, str) \
                or not text.strip() or rate not in RATES:
            message = self.error or "voice_id, text and a supported sample_rate are required"
            await ws.send_json({"request_id": request_id, "status": "error", "message": message})
            return True
        pcm = (await asyncio.to_thread(speech, text, rate=rate)).astype("<i2").tobytes()
        step = rate * self.piece_ms // 1000 * 2
        try:
            for n, i in enumerate(range(0, len(pcm), step)):
                if n == self.cut_after and request.transport is not None:
                    request.transport.abort()
                    self.disconnected.set()
                    return False
                if n == self.stall_after:
                    await self._release.wait()
                    if ws.closed:
                        self.disconnected.set()
                        return False
                audio = base64.b64encode(pcm[i:i + step]).decode()
                await ws.send_json({"request_id": request_id, "status": "chunk",
                                    "data": {"audio": audio}})
                if self.pace:
                    await asyncio.sleep(self.piece_ms / 1000 / self.pace)
            await ws.send_json({"request_id": request_id, "status": "complete", "data": {}})
        except ConnectionResetError:
            self.disconnected.set()
            return False
        self.completed += 1
        return True


waves_server = WavesServer  # `async with waves_server(api_key=...) as server:`


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8767)
    ap.add_argument("--api-key", default=None)
    args = ap.parse_args()
    run_forever(WavesServer(api_key=args.api_key, port=args.port))


if __name__ == "__main__":
    main()
