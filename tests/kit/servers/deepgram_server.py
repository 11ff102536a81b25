"""A local server that speaks Deepgram's live transcription protocol (`/v1/listen`), for tests
and load benchmarks.

What it does, as the service documents it:

- Handshake: `Authorization: Token <key>` must match (else HTTP 401 with a `dg-error`
  header and a JSON body); query parameters are checked (`encoding` must be `linear16`
  here, `sample_rate` is required with it, `channels` must be 1, booleans must be
  `true`/`false`, `endpointing` a number or `false`; else HTTP 400).
- Binary messages are linear16 audio. Recognition is real: the audio runs through
  `media.stt.pocketsphinx` (optionally with a phrase grammar). `interim_results=true`
  sends `Results` with `is_final: false` whenever the hypothesis changes.
- `{"type": "Finalize"}`: the audio since the last final becomes one `Results` with
  `is_final`, `speech_final` and `from_finalize` true (nothing is sent when no audio
  came since). `{"type": "KeepAlive"}`: nothing. `{"type": "CloseStream"}` (or an empty
  binary message, the old way): final results for unfinalised audio, then `Metadata`,
  then close 1000.
- Faults close the socket as the service does: audio that cannot be linear16 (odd
  length) with 1008 `DATA-0000`; no message for `idle_timeout` seconds with 1011
  `NET-0001`; a text message that is not a known JSON control message with 1008.
- `punctuate=true` capitalises the first word and ends a final with a full stop.

Not modelled: automatic endpointing (results are final only on Finalize/CloseStream),
`UtteranceEnd`, `SpeechStarted`, other encodings, multichannel.

`fixed_transcript="..."` skips recognition (for load benchmarks, where the recogniser's
cost must stay off the gateway's core): any utterance with speech energy gets that text.

Tests drive faults and timing through `close_next`, `vanish_next` and `hold_next_final`,
and read what each connection sent in `connections`.

    async with DeepgramServer(phrases=[...]) as dg:
        stt = DeepgramSTT(api_key=dg.api_key, url=dg.url)

    python -m tests.kit.servers.deepgram_server --port 8765 [--fixed-transcript TEXT] [--phrases A B ...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
from aiohttp import WSMsgType, web

log = logging.getLogger(__name__)

API_KEY = "test-deepgram-key"
FRAME = 320  # 20 ms at 16 kHz: the unit pocketsphinx is fed in
SPEECH_RMS = 300.0  # a 20 ms frame above this (about -40 dBFS) counts as speech
_BOOLS = ("interim_results", "punctuate", "smart_format", "diarize", "vad_events",
          "multichannel", "numerals", "profanity_filter", "filler_words")


@dataclass
class Connection:
    """What one client did on one WebSocket."""

    query: dict[str, list[str]]
    authorization: str
    audio_sizes: list[int] = field(default_factory=list)  # bytes of each binary message
    controls: list[str] = field(default_factory=list)  # types of text messages received
    interims: list[str] = field(default_factory=list)
    finals: list[dict[str, Any]] = field(default_factory=list)  # final Results sent
    close_code: int | None = None  # the code this server closed with (None: client closed)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


@dataclass
class _Fault:
    kind: str  # "close" | "vanish"
    after_bytes: int
    code: int = 1011
    reason: str = "NET-0000"


class DeepgramServer:
    """The server; `await start()` (or `async with`) binds 127.0.0.1 on `port` (0: any)."""

    def __init__(self, *, api_key: str | None = API_KEY, phrases: list[str] | None = None,
                 fixed_transcript: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 idle_timeout: float = 10.0, interim_every_s: float = 1.0,
                 pool_size: int = 2) -> None:
        self.api_key = api_key
        self.fixed_transcript = fixed_transcript
        self.host, self.port = host, port
        self.idle_timeout = idle_timeout
        self.interim_every_s = interim_every_s  # fixed-transcript mode's interim cadence
        self.connections: list[Connection] = []
        self.refused: list[int] = []  # HTTP statuses of refused handshakes
        self._engine: Any = None
        if fixed_transcript is None:
            from media.stt.pocketsphinx import PocketSphinxSTT

            self._engine = PocketSphinxSTT(phrases=phrases, pool_size=pool_size)
        self._cmn = self._warm_up() if self._engine is not None else None
        self._faults: list[_Fault] = []
        self._holds: list[asyncio.Event] = []
        self._all_holds: list[asyncio.Event] = []
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.app = web.Application()
        self.app.router.add_get("/v1/listen", self._listen)

    def _warm_up(self) -> str | None:
        """Channel normalisation learnt from one espeak sentence, given to every connection.

        A fresh pocketsphinx stream starts from a generic normalisation and misses some
        first utterances ("tell me a story" after 300 ms of silence); a cloud recogniser
        has no such cold start. With this state every connection starts the same, warm
        (24 of 24 demo phrases in 3 voices, against 1 miss in 5 cold)."""
        from media.frames import split_frames
        from tests.kit.speech import espeak_available, speech

        if not espeak_available():
            return None
        stream = self._engine.new_stream()
        for frame in split_frames(speech("hello, this is a warm up of the recogniser")):
            stream.feed(frame)
        stream.end_of_turn()
        cmn = stream._cmn  # the stream's own state: only pocketsphinx's stream holds it
        stream.close()
        return cmn

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/v1/listen"

    async def start(self) -> str:
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.url

    async def stop(self) -> None:
        for hold in self._all_holds:
            hold.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> DeepgramServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- test controls -------------------------------------------------------------------
    def close_next(self, after_bytes: int = 0, code: int = 1011, reason: str = "NET-0000") -> None:
        """The next connection is closed with `code` once it sent `after_bytes` of audio."""
        self._faults.append(_Fault("close", after_bytes, code, reason))

    def vanish_next(self, after_bytes: int = 0) -> None:
        """The next connection's TCP socket is dropped (no close frame) after that much audio."""
        self._faults.append(_Fault("vanish", after_bytes))

    def hold_next_final(self) -> asyncio.Event:
        """The next connection answers Finalize only once the returned event is set."""
        hold = asyncio.Event()
        self._holds.append(hold)
        self._all_holds.append(hold)
        return hold

    async def wait_for(self, predicate: Any, timeout: float = 10.0) -> Any:
        """Until `predicate()` is truthy; re-checked whenever a connection changes."""
        async def loop() -> Any:
            while not (value := predicate()):
                self._changed.clear()
                await self._changed.wait()
            return value

        return await asyncio.wait_for(loop(), timeout)

    def _poke(self) -> None:
        self._changed.set()

    # -- the protocol ----------------------------------------------------------------------
    def _refuse(self, status: int, code: str, message: str) -> web.Response:
        self.refused.append(status)
        self._poke()
        return web.json_response({"err_code": code, "err_msg": message,
                                  "request_id": str(uuid.uuid4())},
                                 status=status, headers={"dg-error": message})

    def _check_query(self, query: dict[str, list[str]]) -> str | None:
        def one(name: str) -> str | None:
            values = query.get(name)
            return values[-1] if values else None

        encoding = one("encoding")
        if encoding is not None:
            if encoding != "linear16":
                return f"encoding {encoding!r} is not supported by this test server"
            rate = one("sample_rate")
            if rate is None:
                return "sample_rate is required when encoding is given"
            if not rate.isdigit() or not 8000 <= int(rate) <= 48000:
                return f"sample_rate {rate!r} is not a valid rate"
        channels = one("channels")
        if channels is not None and channels != "1":
            return f"channels={channels}: this test server handles mono only"
        for name in _BOOLS:
            value = one(name)
            if value is not None and value not in ("true", "false"):
                return f"{name} must be true or false, got {value!r}"
        endpointing = one("endpointing")
        if endpointing is not None and endpointing != "false" and not endpointing.isdigit():
            return f"endpointing must be a number of milliseconds or false, got {endpointing!r}"
        model = one("model")
        if model is not None and not model:
            return "model is empty"
        return None

    async def _listen(self, request: web.Request) -> web.StreamResponse:
        auth = request.headers.get("Authorization", "")
        scheme, _, key = auth.partition(" ")
        if self.api_key is not None and (scheme.lower() != "token" or key != self.api_key):
            return self._refuse(401, "INVALID_AUTH", "Invalid credentials.")
        query = {k: request.query.getall(k) for k in request.query}
        problem = self._check_query(query)
        if problem:
            return self._refuse(400, "Bad Request", problem)
        conn = Connection(query=query, authorization=auth)
        self.connections.append(conn)
        self._poke()
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        session = _Session(self, conn, ws, request.transport,
                           int(conn.param("sample_rate") or 16000))
        try:
            await session.run()
        finally:
            session.release()
            conn.closed.set()
            self._poke()
        return ws


class _Session:
    """One WebSocket's recognition state."""

    def __init__(self, server: DeepgramServer, conn: Connection, ws: web.WebSocketResponse,
                 transport: asyncio.BaseTransport | None, rate: int) -> None:
        self.server, self.conn, self.ws, self.transport = server, conn, ws, transport
        self.rate = rate
        self.request_id = str(uuid.uuid4())
        self.interim = conn.param("interim_results") == "true"
        self.punctuate = conn.param("punctuate") == "true"
        self.model = conn.param("model") or "general"
        self.fault = server._faults.pop(0) if server._faults else None
        self.hold = server._holds.pop(0) if server._holds else None
        self.stream = server._engine.new_stream() if server._engine is not None else None
        if self.stream is not None and server._cmn is not None:
            self.stream._cmn = server._cmn
        self.resampler: Any = None
        if rate != 16000:
            from media.resample import StreamResampler

            self.resampler = StreamResampler(rate, 16000)
        self.received = 0  # audio bytes
        self.audio_s = 0.0  # seconds of audio received
        self.seg_start = 0.0  # start of the audio not yet finalised
        self.pending = np.zeros(0, dtype=np.int16)  # samples short of a whole frame
        self.has_audio = False  # audio since the last final
        self.speech = False  # a frame with speech energy since the last final
        self.last_interim_at = 0.0
        self.last_hypothesis = ""

    def release(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None

    async def run(self) -> None:
        ws = self.ws
        while True:
            try:
                msg = await ws.receive(timeout=self.server.idle_timeout)
            except TimeoutError:
                await self.close(1011, "NET-0001")
                return
            if msg.type == WSMsgType.BINARY:
                if not msg.data:  # the old way of saying CloseStream
                    await self.close_stream()
                    return
                if not await self.audio(msg.data):
                    return
            elif msg.type == WSMsgType.TEXT:
                if not await self.control(msg.data):
                    return
            else:  # CLOSE, CLOSING, CLOSED, ERROR: the client left
                return

    async def close(self, code: int, reason: str) -> None:
        self.conn.close_code = code
        await self.ws.close(code=code, message=reason.encode())

    async def send(self, obj: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.send_str(json.dumps(obj))

    async def control(self, data: str) -> bool:
        try:
            kind = json.loads(data).get("type")
        except (ValueError, AttributeError):
            kind = None
        if kind not in ("KeepAlive", "Finalize", "CloseStream"):
            self.conn.controls.append(str(kind))
            await self.close(1008, "invalid control message")
            return False
        self.conn.controls.append(kind)
        self.server._poke()
        if kind == "Finalize":
            if self.hold is not None:
                await self.hold.wait()
            if self.has_audio:
                await self.final(from_finalize=True)
        elif kind == "CloseStream":
            await self.close_stream()
            return False
        return True

    async def audio(self, data: bytes) -> bool:
        self.conn.audio_sizes.append(len(data))
        self.server._poke()
        if len(data) % 2:
            await self.close(1008, "DATA-0000")
            return False
        self.received += len(data)
        fault = self.fault
        if fault is not None and self.received >= fault.after_bytes:
            self.fault = None
            if fault.kind == "vanish":
                if isinstance(self.transport, asyncio.Transport):
                    self.transport.abort()
                return False
            await self.close(fault.code, fault.reason)
            return False
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16)
        self.audio_s += len(pcm) / self.rate
        if self.resampler is not None:
            pcm = self.resampler.process(pcm)
        self.has_audio = True
        pcm = np.concatenate([self.pending, pcm])
        whole = len(pcm) - len(pcm) % FRAME
        self.pending = pcm[whole:]
        hypothesis = ""
        for i in range(0, whole, FRAME):
            frame = pcm[i : i + FRAME]
            rms = float(np.sqrt(np.mean(frame.astype(np.float64) ** 2)))
            self.speech = self.speech or rms > SPEECH_RMS
            if self.stream is not None:
                for partial in self.stream.feed(frame):
                    hypothesis = partial.text
        if self.server.fixed_transcript is not None and self.speech and (
                self.audio_s - self.last_interim_at >= self.server.interim_every_s):
            hypothesis = self.server.fixed_transcript
            self.last_interim_at = self.audio_s
        if self.interim and hypothesis and hypothesis != self.last_hypothesis:
            self.last_hypothesis = hypothesis
            self.conn.interims.append(hypothesis)
            await self.send(self.results(hypothesis, is_final=False))
        return True

    def recognise(self) -> str:
        """End the segment: its text ("" when nothing was recognised)."""
        if self.server.fixed_transcript is not None:
            return self.server.fixed_transcript if self.speech else ""
        if self.stream is None:
            return ""
        if len(self.pending):
            self.stream.feed(self.pending)
        final = self.stream.end_of_turn()
        return final.text if final is not None else ""

    async def final(self, from_finalize: bool) -> None:
        text = self.recognise()
        if text and self.punctuate:
            text = text[0].upper() + text[1:]
            if text[-1] not in ".?!":
                text += "."
        msg = self.results(text, is_final=True, from_finalize=from_finalize)
        self.conn.finals.append(msg)
        self.server._poke()
        await self.send(msg)
        self.seg_start = self.audio_s
        self.pending = np.zeros(0, dtype=np.int16)
        self.has_audio = self.speech = False
        self.last_hypothesis = ""
        self.last_interim_at = self.audio_s

    async def close_stream(self) -> None:
        if self.has_audio:
            await self.final(from_finalize=False)
        await self.send({
            "type": "Metadata", "transaction_key": "deprecated", "request_id": self.request_id,
            "sha256": "", "created": datetime.now(UTC).isoformat(), "duration": self.audio_s,
            "channels": 1,
        })
        await self.close(1000, "")

    def results(self, text: str, *, is_final: bool, from_finalize: bool = False) -> dict[str, Any]:
        duration = max(self.audio_s - self.seg_start, 0.0)
        words = text.split()
        step = duration / max(len(words), 1)
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "duration": round(duration, 3),
            "start": round(self.seg_start, 3),
            "is_final": is_final,
            "speech_final": is_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": text,
                "confidence": 0.9 if text else 0.0,
                "words": [{"word": w.strip(".?!,").lower(), "punctuated_word": w,
                           "start": round(self.seg_start + i * step, 3),
                           "end": round(self.seg_start + (i + 1) * step, 3),
                           "confidence": 0.9} for i, w in enumerate(words)],
            }]},
            "metadata": {"request_id": self.request_id,
                         "model_info": {"name": self.model, "version": "test", "arch": "test"},
                         "model_uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, self.model))},
        }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.kit.servers.deepgram_server",
                                     description="a local server speaking Deepgram's live protocol")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default=API_KEY,
                        help="the key clients must send ('' accepts any or none)")
    parser.add_argument("--fixed-transcript", default=None,
                        help="answer every utterance with speech energy with this text")
    parser.add_argument("--phrases", nargs="+", default=None,
                        help="recognise only these phrases (pocketsphinx grammar)")
    parser.add_argument("--pool", type=int, default=4, help="pocketsphinx decoders made at start")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def serve() -> None:
        server = DeepgramServer(api_key=args.api_key or None, phrases=args.phrases,
                                fixed_transcript=args.fixed_transcript, host=args.host,
                                port=args.port, pool_size=args.pool)
        url = await server.start()
        print(f"deepgram test server listening on {url}", flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
