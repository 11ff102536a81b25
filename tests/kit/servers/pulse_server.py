"""A local server that speaks Smallest AI's Pulse streaming STT WebSocket, for tests:
real recognition (pocketsphinx, optionally with a phrase grammar), no cloud.

`/waves/v1/pulse/get_text?language=..&encoding=linear16&sample_rate=16000` takes
`Authorization: Bearer KEY` (401 on the upgrade otherwise; 400 for another encoding or
rate). Binary messages are the audio; whenever the hypothesis changes the server sends
`{"session_id", "transcript", "is_final": false, "is_last": false}`. The text message
`{"type": "finalize"}` ends the audio: the final `{"transcript", "is_final": true,
"is_last": true}` (with `full_transcript`), then a normal close. Anything else as text
gets `{"status": "error", "message"}` and a close 1008. Scriptable for failure tests:
`vanish_next` drops the next connection without a close once audio arrived, `hold_final`
keeps the final back until `release()`.

    async with pulse_server(api_key="k", phrases=[...]) as server:
        stt = PulseSTT(api_key="k", url=server.url)

    python -m tests.kit.servers.pulse_server --port 8769 --api-key k [--phrases A B ...]
"""

from __future__ import annotations

import argparse
import itertools
import json
from dataclasses import dataclass, field
from typing import Any, Self

import numpy as np
from aiohttp import WSMsgType, web

from media.frames import split_frames
from media.stt.pocketsphinx import PocketSphinxSTT
from tests.kit.servers.local_server import LocalServer, run_forever
from tests.kit.speech import speech

PATH = "/waves/v1/pulse/get_text"


@dataclass
class Connection:
    """What one client connection sent."""

    query: dict[str, str]
    authorization: str | None
    audio: bytearray = field(default_factory=bytearray)
    texts: list[str] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)


class PulseServer(LocalServer):
    def __init__(self, api_key: str | None = None, *, phrases: list[str] | None = None,
                 port: int = 0) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.vanish_next = False
        self.hold_final = False
        self.connections: list[Connection] = []
        self._engine = PocketSphinxSTT(phrases=phrases, pool_size=1)
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{PATH}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get(PATH, self._socket)

    async def start(self) -> Self:
        # One utterance first: pocketsphinx's noise normalisation starts far off and can
        # miss a short first word (its one decoder is reused for every connection).
        stream = self._engine.new_stream()
        for frame in split_frames(speech("hello there")):
            stream.feed(frame)
        stream.end_of_turn()
        stream.close()
        return await super().start()

    async def _socket(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        if self.api_key is not None and auth != f"Bearer {self.api_key}":
            return web.json_response({"message": "Unauthorized"}, status=401)
        query = dict(request.query)
        if query.get("encoding", "linear16") != "linear16" or \
                query.get("sample_rate", "16000") != "16000":
            return web.json_response({"message": "this server takes linear16 at 16000 Hz"},
                                     status=400)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        conn = Connection(query, auth)
        self.connections.append(conn)
        session_id = f"sess-{next(self._ids)}"
        stream = self._engine.new_stream()
        vanish, self.vanish_next = self.vanish_next, False
        last = ""

        async def send(message: dict[str, Any]) -> None:
            conn.sent.append(message)
            await ws.send_json({"session_id": session_id, **message})

        try:
            async for msg in ws:
                if msg.type == WSMsgType.BINARY:
                    if vanish and request.transport is not None:
                        request.transport.abort()
                        return ws
                    conn.audio += msg.data
                    pcm = np.frombuffer(msg.data[: len(msg.data) // 2 * 2], "<i2")
                    text = last
                    for frame in split_frames(pcm):
                        for partial in stream.feed(frame):
                            text = partial.text
                    if text and text != last:
                        last = text
                        await send({"transcript": text, "is_final": False, "is_last": False})
                elif msg.type == WSMsgType.TEXT:
                    conn.texts.append(msg.data)
                    try:
                        kind = json.loads(msg.data).get("type")
                    except (ValueError, AttributeError):
                        kind = None
                    if kind != "finalize":
                        await ws.send_json({"status": "error", "message": "unknown message"})
                        await ws.close(code=1008)
                        break
                    if self.hold_final:
                        await self._release.wait()
                    final = stream.end_of_turn()
                    text = final.text if final else ""
                    await send({"transcript": text, "full_transcript": text, "is_final": True,
                                "is_last": True, "language": query.get("language", "en")})
                    await ws.close()
                    break
        finally:
            stream.close()
        return ws


pulse_server = PulseServer  # `async with pulse_server(api_key=...) as server:`


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8769)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--phrases", nargs="*", default=None)
    args = ap.parse_args()
    run_forever(PulseServer(api_key=args.api_key, phrases=args.phrases, port=args.port))


if __name__ == "__main__":
    main()
