"""A local server that speaks OpenAI's `/v1/audio/speech`, for tests: real speech, no cloud.

`POST /v1/audio/speech` with `{"model", "voice", "input", "response_format"}` answers as
OpenAI does for `response_format="pcm"`: a chunked body of raw 16-bit little-endian mono
PCM at 24 kHz, here spoken by espeak-ng. Errors come as OpenAI's JSON error objects (401
for a wrong key, 400 for another format). Scriptable for failure tests: `status` answers
every request with that HTTP error, `cut_after` drops the connection after N pieces of
the body, `stall_after` holds the body after N pieces until `release()` or until the
client leaves (`disconnected` is set then). `piece_bytes` is odd by default, so samples
split across pieces.

    async with FakeSpeechServer(api_key="k") as server:
        tts = OpenAITTS(api_key="k", base_url=server.url)
        ...
        assert server.requests[0]["input"] == "Hello."

    python -m tests.kit.servers.openai_speech_server --port 8766   # for a gateway in another process
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from aiohttp import web

from tests.kit.servers.local_server import LocalServer, run_forever
from tests.kit.speech import speech

RATE = 24000


class FakeSpeechServer(LocalServer):
    """An aiohttp server on 127.0.0.1 answering `/v1/audio/speech` with espeak-ng audio."""

    def __init__(self, api_key: str | None = None, *, piece_bytes: int = 4801,
                 pace: float | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.piece_bytes = piece_bytes
        self.pace = pace  # None: as fast as possible; 1.0: real time
        self.status: int | None = None
        self.cut_after: int | None = None
        self.stall_after: int | None = None
        self.requests: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self.finished = 0  # bodies sent to the end

    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client (ends in `/v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/speech", self._speech)

    async def _speech(self, request: web.Request) -> web.StreamResponse:
        if self.api_key is not None and \
                request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", "invalid_request_error")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not JSON", "invalid_request_error")
        self.requests.append(body)
        if self.status is not None:
            return _error(self.status, "The server had an error.", "server_error")
        text = body.get("input")
        if not isinstance(text, str) or not text.strip() or not body.get("model") \
                or not body.get("voice"):
            return _error(400, "model, voice and input are required", "invalid_request_error")
        if body.get("response_format") != "pcm":
            return _error(400, "this server answers response_format 'pcm' only",
                          "invalid_request_error")
        pcm = (await asyncio.to_thread(speech, text, rate=RATE)).astype("<i2").tobytes()
        response = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        await response.prepare(request)
        try:
            for n, i in enumerate(range(0, len(pcm), self.piece_bytes)):
                if n == self.cut_after and request.transport is not None:
                    request.transport.abort()
                    return response
                if n == self.stall_after:
                    await self._release.wait()
                piece = pcm[i:i + self.piece_bytes]
                await response.write(piece)
                if self.pace:
                    await asyncio.sleep(len(piece) / 2 / RATE / self.pace)
            await response.write_eof()
            self.finished += 1
        except asyncio.CancelledError:
            self.disconnected.set()
            raise
        except ConnectionResetError:
            self.disconnected.set()
        return response


def _error(status: int, message: str, kind: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": kind, "param": None, "code": None}},
        status=status)


speech_server = FakeSpeechServer  # `async with speech_server(api_key=...) as server:`


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--api-key", default=None)
    args = ap.parse_args()
    run_forever(FakeSpeechServer(api_key=args.api_key, port=args.port))


if __name__ == "__main__":
    main()
