"""Cloud TTS over Smallest AI's Waves streaming WebSocket (Lightning v3.1), the Atoms
platform's own voices.

    tts = WavesTTS(voice="magnus")     # key from SMALLEST_API_KEY; check() names what is missing
    async for chunk in tts.synthesize("Hello."): ...   # 16 kHz int16, as it arrives

The protocol, as the published SDK (`smallestai` 4.4.0, `smallestai.waves`) speaks it:
`wss://api.smallest.ai/waves/v1/lightning-v3.1/get_speech/stream` with `Authorization:
Bearer KEY`; per request one JSON text message `{"voice_id", "text", "language",
"sample_rate", "speed", "max_buffer_flush_ms", "continue", "flush"}`; the server answers
with JSON messages `{"request_id", "status": "chunk", "data": {"audio": base64 PCM}}`
(16-bit little-endian mono at the requested rate), then `{"status": "complete"}`, or
`{"status": "error", "message"}`. We ask for 16 kHz, our internal rate, so nothing is
resampled.

Connections: a connection serves one sentence at a time and goes back to a small idle
pool when the sentence is complete, so the next sentence (of any call) skips the TLS and
WebSocket handshakes. A sentence cut short (barge-in) closes its connection in the
background instead: the server would still be sending that sentence's audio on it. A
pooled connection the server has dropped meanwhile is replaced once, before any audio of
the sentence has been yielded.

Failures are the interface's: a refused handshake (bad key), an error message, a
connection lost mid-sentence or no message for `timeout` seconds is raised from the
iteration as RuntimeError; the speaker logs it and goes on with the next sentence.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np

from media.frames import SAMPLE_RATE

__all__ = ["WavesTTS", "WAVES_URL", "DEFAULT_VOICE", "WavesOptions", "Options", "create",
           "describe"]

log = logging.getLogger(__name__)

WAVES_URL = "wss://api.smallest.ai/waves/v1/lightning-v3.1/get_speech/stream"
DEFAULT_VOICE = "magnus"
_closing: set[asyncio.Task[Any]] = set()  # connections being closed in the background


class _Dropped(Exception):
    """A pooled connection turned out to be gone before the sentence's first audio."""


class WavesTTS:
    """The engine: created once per process; a pool of connections shared by every call."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        voice: str | None = None,
        api_key: str | None = None,
        url: str = WAVES_URL,
        *,
        language: str = "en",
        speed: float = 1.0,
        timeout: float = 10.0,
        max_idle: int = 8,
    ) -> None:
        self.voice = voice or DEFAULT_VOICE
        self.url = url
        self.language = language
        self.speed = speed
        self._key = api_key or os.environ.get("SMALLEST_API_KEY") or None
        self._timeout = timeout
        self._max_idle = max_idle
        self._idle: list[aiohttp.ClientWebSocketResponse] = []
        self._http: aiohttp.ClientSession | None = None
        self.connects = 0  # WebSocket connections opened (pool reuse shows here)

    def check(self) -> None:
        if self._key is None:
            raise RuntimeError("Smallest Waves text-to-speech needs a key: set SMALLEST_API_KEY")

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        self.check()
        message = json.dumps({
            "voice_id": self.voice, "text": text, "language": self.language,
            "sample_rate": SAMPLE_RATE, "speed": self.speed, "max_buffer_flush_ms": 0,
            "continue": False, "flush": False,
        })
        for attempt in (0, 1):
            ws, pooled = await self._connection(fresh=attempt > 0)
            complete = False
            replies = self._sentence(ws, message, pooled and attempt == 0)
            try:
                async for chunk in replies:
                    if chunk is None:
                        complete = True
                    else:
                        yield chunk
                return
            except _Dropped:
                continue  # a stale pooled connection: once more on a fresh one
            finally:
                await replies.aclose()
                if complete and not ws.closed and len(self._idle) < self._max_idle:
                    self._idle.append(ws)
                else:
                    _close_later(ws)

    async def _sentence(self, ws: aiohttp.ClientWebSocketResponse, message: str,
                        may_be_stale: bool) -> AsyncGenerator[np.ndarray | None, None]:
        """One request on `ws`: its audio, then None once the server says it is complete."""
        got_audio = False
        try:
            await ws.send_str(message)
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            if may_be_stale:
                raise _Dropped from exc
            raise RuntimeError(f"text-to-speech at {self.url}: could not send: {exc}") from exc
        while True:
            try:
                msg = await ws.receive(timeout=self._timeout)
            except TimeoutError:
                raise RuntimeError(f"text-to-speech at {self.url}: nothing for "
                                   f"{self._timeout:g} s") from None
            if msg.type != aiohttp.WSMsgType.TEXT:
                if may_be_stale and not got_audio:
                    raise _Dropped
                what = ("a binary message" if msg.type == aiohttp.WSMsgType.BINARY
                        else f"connection lost ({msg.type.name} {ws.close_code})")
                raise RuntimeError(f"text-to-speech at {self.url}: {what}")
            try:
                reply = json.loads(msg.data)
                status = reply.get("status")
                audio = (reply.get("data") or {}).get("audio")
                pcm = base64.b64decode(audio, validate=True) if audio else b""
            except (ValueError, AttributeError, binascii.Error) as exc:
                raise RuntimeError(f"text-to-speech at {self.url}: malformed message: "
                                   f"{exc}") from exc
            if status == "error":
                raise RuntimeError(f"text-to-speech at {self.url}: "
                                   f"{reply.get('message') or 'error'}")
            if len(pcm) >= 2:
                got_audio = True
                yield np.frombuffer(pcm[: len(pcm) - len(pcm) % 2], "<i2")
            if status == "complete":
                yield None
                return

    async def _connection(self, fresh: bool = False
                          ) -> tuple[aiohttp.ClientWebSocketResponse, bool]:
        """An idle pooled connection (True) or, if none or `fresh`, a new one (False)."""
        while self._idle and not fresh:
            ws = self._idle.pop()
            if not ws.closed:
                return ws, True
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            ws = await self._http.ws_connect(
                self.url, headers={"Authorization": f"Bearer {self._key}"},
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0), heartbeat=None,
                max_msg_size=0)
        except aiohttp.WSServerHandshakeError as exc:
            raise RuntimeError(f"text-to-speech at {self.url}: refused: HTTP {exc.status}"
                               + (" (check SMALLEST_API_KEY)" if exc.status in (401, 403)
                                  else "")) from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise RuntimeError(f"text-to-speech at {self.url}: cannot connect: "
                               f"{type(exc).__name__} {exc}") from exc
        self.connects += 1
        return ws, False

    async def aclose(self) -> None:
        """Close the pooled connections and the HTTP session."""
        idle, self._idle = self._idle, []
        for ws in idle:
            await ws.close()
        if _closing:
            await asyncio.gather(*list(_closing), return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None


def _close_later(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Close `ws` without making the caller (a barge-in) wait for the close handshake."""
    if ws.closed:
        return
    task = asyncio.get_running_loop().create_task(ws.close())
    _closing.add(task)
    task.add_done_callback(_closing.discard)


@dataclass(frozen=True)
class WavesOptions:
    """What `tts="waves"` is made from (Smallest AI's Waves)."""

    voice: str | None = None  # a voice id (None: DEFAULT_VOICE)
    api_key: str | None = None  # None: SMALLEST_API_KEY
    url: str = WAVES_URL


Options = WavesOptions  # (the factory's name for it: `media.tts.get_engine`)


def create(options: WavesOptions) -> WavesTTS:
    return WavesTTS(voice=options.voice, api_key=options.api_key, url=options.url)


def describe(options: WavesOptions, engine: WavesTTS) -> str:
    """The start-up line's words for this engine."""
    return f"waves (voice {engine.voice}, at {engine.url})"
