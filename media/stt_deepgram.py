"""Streaming cloud STT over Deepgram's live transcription WebSocket (`/v1/listen`).

    stt = DeepgramSTT()            # key from DEEPGRAM_API_KEY; check() names what is missing
    stream = stt.new_stream()      # one per call (cheap: no socket yet)
    partials = stream.feed(frame)  # never blocks: enqueues audio, returns interim results
    final = await stream.end_of_turn_async()   # the turn ends at the call, the text comes later
    stream.close(); await stt.aclose()

Design, chosen for many calls per core:

- One WebSocket per utterance. It opens when the first frame of a turn is fed (audio is
  buffered while it connects) and closes after the turn's final result, so a silent
  caller costs nothing and no keep-alive traffic flows between turns. While one is open
  and no audio flows for `keepalive_s`, a `KeepAlive` message holds it (the service
  drops a socket after 10 s without data).
- Audio is batched into `batch_ms` (100 ms) binary messages: 10 sends a second per
  speaking caller instead of 50.
- `feed` only appends bytes to a buffer and wakes the utterance's task once a batch is
  ready; one task per utterance sends, and one receives (never a task per frame).
- `end_of_turn_async()` detaches the utterance at once (frames fed afterwards open the
  next one), sends what is buffered, then `Finalize` and `CloseStream`. The result is
  the utterance's final segments joined, ready when the result marked `from_finalize`
  arrives, or when the server's closing `Metadata` (or the close itself) says nothing
  more will come, or after `final_timeout` (with whatever was final by then).
- Failures are contained: a refused handshake (bad key: HTTP 401), an error message,
  a close code other than 1000, or a server that vanished is logged with what happened,
  that turn's result is None, and the next utterance connects afresh.

All utterances of the engine share one aiohttp `ClientSession` (made lazily on the
running loop, unlimited connections); `aclose()` closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import Awaitable, Iterable
from typing import Any

import aiohttp
import numpy as np
from yarl import URL

from media.frames import SAMPLE_RATE
from media.stt import Transcript, check_frame

__all__ = ["DeepgramSTT", "DeepgramStream", "DEEPGRAM_URL"]

log = logging.getLogger(__name__)

DEEPGRAM_URL = "wss://api.deepgram.com/v1/listen"
_REAL_HOSTS = ("deepgram.com",)
_KEEPALIVE = json.dumps({"type": "KeepAlive"})
_FINALIZE = json.dumps({"type": "Finalize"})
_CLOSE_STREAM = json.dumps({"type": "CloseStream"})


def _flag(value: bool) -> str:
    return "true" if value else "false"


class DeepgramSTT:
    """The engine: created once per process; `new_stream()` per call."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        api_key: str | None = None,
        url: str = DEEPGRAM_URL,
        model: str = "nova-3",
        language: str = "en",
        *,
        interim_results: bool = True,
        punctuate: bool = True,
        smart_format: bool = False,
        endpointing: int | bool | None = None,
        keyterms: Iterable[str] = (),
        extra_params: dict[str, str] | None = None,
        batch_ms: int = 100,
        final_timeout: float = 2.0,
        connect_timeout: float = 5.0,
        keepalive_s: float = 5.0,
    ) -> None:
        self.api_key = api_key or os.environ.get("DEEPGRAM_API_KEY") or None
        self.url = url
        self.model = model
        self.language = language
        self.batch_bytes = max(1, SAMPLE_RATE * batch_ms // 1000) * 2
        self.final_timeout = final_timeout
        self.connect_timeout = connect_timeout
        self.keepalive_s = keepalive_s
        params: list[tuple[str, str]] = [
            ("encoding", "linear16"), ("sample_rate", str(SAMPLE_RATE)), ("channels", "1"),
            ("model", model), ("language", language),
            ("interim_results", _flag(interim_results)), ("punctuate", _flag(punctuate)),
            ("smart_format", _flag(smart_format)),
        ]
        if endpointing is not None:
            params.append(("endpointing", _flag(False) if endpointing is False
                           else str(int(endpointing))))
        params.extend(("keyterm", k) for k in keyterms)
        params.extend((extra_params or {}).items())
        self.params = params
        self._session: aiohttp.ClientSession | None = None
        self._session_loop: asyncio.AbstractEventLoop | None = None

    @property
    def is_real_service(self) -> bool:
        host = URL(self.url).host or ""
        return any(host == h or host.endswith("." + h) for h in _REAL_HOSTS)

    def check(self) -> None:
        """Raise RuntimeError naming what is missing (the API key, a usable URL)."""
        url = URL(self.url)
        if url.scheme not in ("ws", "wss") or not url.host:
            raise RuntimeError(f"Deepgram URL {self.url!r} is not a ws:// or wss:// URL")
        if not self.api_key and self.is_real_service:
            raise RuntimeError(
                "Deepgram speech recognition needs an API key: set DEEPGRAM_API_KEY "
                "(or ATOMS_DEEPGRAM_API_KEY), or pass api_key=")

    def new_stream(self) -> DeepgramStream:
        return DeepgramStream(self)

    async def aclose(self) -> None:
        """Close the shared HTTP session (open sockets of live utterances with it)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()

    # -- used by the streams -------------------------------------------------------------
    def _http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self._session_loop = loop
        return self._session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.api_key}"} if self.api_key else {}


class DeepgramStream:
    """One call's recogniser: a sequence of utterances, each on its own WebSocket."""

    def __init__(self, engine: DeepgramSTT) -> None:
        self._engine = engine
        self._utt: _Utterance | None = None
        self._finishing: set[_Utterance] = set()  # ended turns still awaiting their text
        self._count = 0
        self._closed = False

    def feed(self, frame: np.ndarray) -> list[Transcript]:
        self._check_open()
        check_frame(frame)
        if not len(frame):
            return []
        if self._utt is None:
            self._count += 1
            self._utt = _Utterance(self._engine, self._count)
        return self._utt.push(frame)

    def end_of_turn_async(self) -> Awaitable[Transcript | None]:
        """End the turn now; the awaitable gives its final transcript (None: no words, or
        the service failed, which is logged)."""
        self._check_open()
        utt, self._utt = self._utt, None
        if utt is None:
            done: asyncio.Future[Transcript | None] = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        self._finishing.add(utt)
        utt.task.add_done_callback(lambda _t: self._finishing.discard(utt))
        return utt.finish()

    def end_of_turn(self) -> Transcript | None:
        """Synchronous fallback: ends the turn like `end_of_turn_async` but can only return
        what the service had finalised so far. Prefer `end_of_turn_async`."""
        utt = self._utt
        self.end_of_turn_async()
        return utt.final_so_far() if utt is not None else None

    def close(self) -> None:
        """Cancel every utterance; their tasks close their sockets."""
        self._closed = True
        utts = list(self._finishing) + ([self._utt] if self._utt is not None else [])
        self._utt = None
        self._finishing.clear()
        for utt in utts:
            utt.cancel()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this STT stream is closed")


class _Utterance:
    """One turn's audio on one WebSocket: a sender task and a receiver task."""

    def __init__(self, engine: DeepgramSTT, number: int) -> None:
        self.engine = engine
        self.number = number
        self._buf = bytearray()
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()  # the final result is in, or nothing more will come
        self._finishing = False
        self._close_sent = False
        self.failed: str | None = None
        self._finals: list[str] = []
        self._partials: list[Transcript] = []
        self._last_partial = ""
        self.result: asyncio.Future[Transcript | None] = (
            asyncio.get_running_loop().create_future())
        self.task = asyncio.create_task(self._run(), name=f"deepgram-utterance-{number}")

    # -- called from the voice loop (sync, never blocking) ------------------------------
    def push(self, frame: np.ndarray) -> list[Transcript]:
        if self.failed is None:
            self._buf += frame.astype("<i2", copy=False).tobytes()
            if len(self._buf) >= self.engine.batch_bytes:
                self._wake.set()
        out, self._partials = self._partials, []
        return out

    def finish(self) -> asyncio.Future[Transcript | None]:
        self._finishing = True
        self._wake.set()
        return self.result

    def final_so_far(self) -> Transcript | None:
        text = " ".join(self._finals).strip()
        return Transcript(text, True) if text else None

    def cancel(self) -> None:
        self._settle(None)
        self.task.cancel()

    # -- the utterance's tasks -----------------------------------------------------------
    def _settle(self, result: Transcript | None) -> None:
        if not self.result.done():
            self.result.set_result(result)

    def _fail(self, why: str, level: int = logging.WARNING) -> None:
        if self.failed is None:
            self.failed = why
            self._buf.clear()
            log.log(level, "deepgram: utterance %d: %s; this turn has no transcript",
                    self.number, why)
        self._settled.set()
        self._wake.set()

    async def _run(self) -> None:
        ws: aiohttp.ClientWebSocketResponse | None = None
        receiver: asyncio.Task[None] | None = None
        try:
            ws = await self._connect()
            if ws is None:
                return
            receiver = asyncio.create_task(self._receive(ws),
                                           name=f"deepgram-receive-{self.number}")
            await self._send_audio(ws)
            if self.failed is None:
                await self._finalize(ws)
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            self._fail(f"connection to {self.engine.url} lost while sending "
                       f"({type(exc).__name__}: {exc})")
        except Exception:  # a bug here must not take the call down
            log.exception("deepgram: utterance %d failed", self.number)
            self._fail("internal error")
        finally:
            self._settle(None if self.failed else self.final_so_far())
            if receiver is not None:
                receiver.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await receiver
            if ws is not None and not ws.closed:
                with contextlib.suppress(Exception):
                    await ws.close()

    async def _connect(self) -> aiohttp.ClientWebSocketResponse | None:
        eng = self.engine
        url = URL(eng.url).extend_query(eng.params)
        try:
            async with asyncio.timeout(eng.connect_timeout):
                return await eng._http().ws_connect(
                    url, headers=eng._headers(), autoping=True, compress=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=1.0))
        except aiohttp.WSServerHandshakeError as exc:
            detail = (exc.headers or {}).get("dg-error") or exc.message
            if exc.status in (401, 403):
                self._fail(f"Deepgram rejected the API key (HTTP {exc.status}: {detail}); "
                           "check DEEPGRAM_API_KEY", logging.ERROR)
            else:
                self._fail(f"Deepgram refused the connection (HTTP {exc.status}: {detail})",
                           logging.ERROR)
        except TimeoutError:
            self._fail(f"no connection to {eng.url} within {eng.connect_timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            self._fail(f"cannot connect to {eng.url} ({type(exc).__name__}: {exc})")
        return None

    async def _send_audio(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send full batches as they fill; on finish, the rest. KeepAlive when idle."""
        batch = self.engine.batch_bytes
        while self.failed is None:
            while len(self._buf) >= batch or (self._finishing and self._buf):
                n = min(batch, len(self._buf))
                chunk = bytes(self._buf[:n])
                del self._buf[:n]
                await ws.send_bytes(chunk)
            if self._finishing:
                return
            self._wake.clear()
            try:
                async with asyncio.timeout(self.engine.keepalive_s):
                    await self._wake.wait()
            except TimeoutError:
                await ws.send_str(_KEEPALIVE)

    async def _finalize(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_str(_FINALIZE)
        await ws.send_str(_CLOSE_STREAM)
        self._close_sent = True
        try:
            async with asyncio.timeout(self.engine.final_timeout):
                await self._settled.wait()
        except TimeoutError:
            log.warning("deepgram: utterance %d: no final result within %g s; using %s",
                        self.number, self.engine.final_timeout,
                        "the segments final so far" if self._finals else "nothing")
        self._settle(None if self.failed else self.final_so_far())

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        try:
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_text(msg.data)
                    if self.failed is not None:
                        return
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    log.debug("deepgram: ignoring a binary message")
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                  aiohttp.WSMsgType.CLOSED):
                    code = ws.close_code
                    reason = msg.extra if msg.type == aiohttp.WSMsgType.CLOSE else ""
                    if code == 1000 and self._close_sent:
                        self._settled.set()
                    elif code in (None, 1006) or msg.type == aiohttp.WSMsgType.CLOSED:
                        self._fail(f"Deepgram ({self.engine.url}) went away without "
                                   "closing the connection")
                    else:
                        self._fail(f"Deepgram closed the connection: code {code} {reason or ''}"
                                   .rstrip())
                    return
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    self._fail(f"connection to Deepgram failed ({msg.data!r})")
                    return
        finally:
            self._wake.set()

    def _on_text(self, data: str) -> None:
        try:
            msg = json.loads(data)
            kind = msg.get("type")
        except (ValueError, AttributeError):
            log.warning("deepgram: utterance %d: ignoring a message that is not JSON "
                        "object: %.200r", self.number, data)
            return
        if kind == "Results":
            self._on_results(msg)
        elif kind == "Metadata":
            if self._close_sent:
                self._settled.set()  # sent on CloseStream, after the last results
        elif kind in ("SpeechStarted", "UtteranceEnd"):
            pass
        elif kind == "Error" or "err_code" in msg or "error" in msg:
            detail = (msg.get("description") or msg.get("err_msg") or msg.get("message")
                      or msg.get("error") or data)
            self._fail(f"Deepgram reported an error: {str(detail)[:300]}", logging.ERROR)
        else:
            log.debug("deepgram: ignoring a %r message", kind)

    def _on_results(self, msg: dict[str, Any]) -> None:
        try:
            text = str(msg["channel"]["alternatives"][0].get("transcript") or "").strip()
        except (KeyError, IndexError, TypeError, AttributeError):
            log.warning("deepgram: utterance %d: malformed Results message ignored",
                        self.number)
            return
        if msg.get("is_final"):
            if text:
                self._finals.append(text)
            hypothesis = " ".join(self._finals)
        else:
            hypothesis = " ".join([*self._finals, text]) if text else ""
        if hypothesis and hypothesis != self._last_partial:
            self._last_partial = hypothesis
            self._partials.append(Transcript(hypothesis, False))
        if msg.get("from_finalize"):
            self._settled.set()
