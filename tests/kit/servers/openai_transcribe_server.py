"""A local server that speaks OpenAI's `/v1/audio/transcriptions`, for tests: real
recognition (pocketsphinx, optionally with a phrase grammar), no cloud.

`POST /v1/audio/transcriptions` takes the multipart form OpenAI's clients send (`file`,
`model`, optional `language`, `prompt`, `response_format`) and answers `{"text": ...}`.
The file must be a 16-bit PCM WAV (any rate: it is resampled to 16 kHz), else 400; a
wrong key gets 401; errors are OpenAI's JSON error objects. Scriptable: `status` answers
every request with that HTTP error, `hold` keeps answers back until `release()`,
`fixed_transcript` answers that text without recognising.

    async with transcribe_server(api_key="k", phrases=[...]) as server:
        stt = OpenAISTT(api_key="k", base_url=server.url)
        ...
        assert server.requests[0]["model"] == "gpt-4o-mini-transcribe"

    python -m tests.kit.servers.openai_transcribe_server --port 8768 [--phrases A B ...]
"""

from __future__ import annotations

import argparse
import io
import wave
from typing import Any, Self

import numpy as np
import soxr
from aiohttp import web

from media.frames import SAMPLE_RATE, split_frames
from tests.kit.servers.local_server import LocalServer, run_forever


class FakeTranscribeServer(LocalServer):
    client_max_size = 64 * 1024 * 1024

    def __init__(self, api_key: str | None = None, *, phrases: list[str] | None = None,
                 fixed_transcript: str | None = None, port: int = 0) -> None:
        super().__init__(port)
        self.api_key = api_key
        self.phrases = phrases
        self.fixed_transcript = fixed_transcript
        self.status: int | None = None
        self.hold = False
        self.requests: list[dict[str, Any]] = []  # form fields; `audio`: the WAV's samples
        self._engine: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/audio/transcriptions", self._transcribe)

    async def start(self) -> Self:
        if self.fixed_transcript is None:
            from media.stt.pocketsphinx import PocketSphinxSTT

            self._engine = PocketSphinxSTT(phrases=self.phrases, pool_size=1)
        return await super().start()

    async def _transcribe(self, request: web.Request) -> web.Response:
        if self.api_key is not None and \
                request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.")
        form = await request.post()
        upload = form.get("file")
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if self.status is not None:
            self.requests.append(fields)
            return _error(self.status, "The server had an error.")
        if upload is None or isinstance(upload, str) or not fields.get("model"):
            return _error(400, "file and model are required")
        try:
            pcm = _read_wav(upload.file.read())
        except (wave.Error, EOFError, ValueError) as exc:
            return _error(400, f"cannot read the audio file: {exc}")
        self.requests.append({**fields, "audio": pcm})
        if self.hold:
            await self._release.wait()
        return web.json_response({"text": self._recognise(pcm)})

    def _recognise(self, pcm: np.ndarray) -> str:
        if self.fixed_transcript is not None:
            return self.fixed_transcript
        stream = self._engine.new_stream()
        try:
            for frame in split_frames(pcm):  # (padding with digital silence upsets it)
                stream.feed(frame)
            final = stream.end_of_turn()
        finally:
            stream.close()
        return final.text if final else ""


def _read_wav(data: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(data)) as w:
        if w.getsampwidth() != 2:
            raise ValueError("16-bit PCM only")
        rate, channels = w.getframerate(), w.getnchannels()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    if channels > 1:
        pcm = pcm.reshape(-1, channels).mean(axis=1).astype(np.int16)
    if rate != SAMPLE_RATE:
        pcm = soxr.resample(pcm, rate, SAMPLE_RATE)
    return pcm.astype(np.int16)


def _error(status: int, message: str) -> web.Response:
    return web.json_response(
        {"error": {"message": message, "type": "invalid_request_error", "param": None,
                   "code": None}}, status=status)


transcribe_server = FakeTranscribeServer  # `async with transcribe_server(...) as server:`


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8768)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--phrases", nargs="*", default=None)
    ap.add_argument("--fixed-transcript", default=None)
    args = ap.parse_args()
    run_forever(FakeTranscribeServer(api_key=args.api_key, phrases=args.phrases,
                                     fixed_transcript=args.fixed_transcript, port=args.port))


if __name__ == "__main__":
    main()
