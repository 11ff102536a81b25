"""Streaming STT over one WebSocket per caller utterance: what Deepgram's and Smallest
Pulse's live recognisers share (`media/stt/deepgram.py`, `media/stt/pulse.py`).

Design, chosen for many calls per core:

- One WebSocket per utterance. It opens when the first frame of a turn is fed (audio is
  buffered while it connects) and closes after the turn's final result, so a silent
  caller costs nothing and no keep-alive traffic flows between turns.
- Audio is batched into `batch_ms` (100 ms) binary messages of 16 kHz linear16: 10 sends
  a second per speaking caller instead of 50.
- `feed` only appends bytes to a buffer and wakes the utterance's task once a batch is
  ready; one task per utterance sends, and one receives (never a task per frame).
- `end_of_turn_async()` detaches the utterance at once (frames fed afterwards open the
  next one), sends what is buffered, then the service's end-of-audio messages. The result
  is the utterance's final segments joined, ready when the service says nothing more
  will come (or closes normally), or after `final_timeout` (with whatever was final).
- Failures are contained: a refused handshake (bad key: HTTP 401), an error message,
  a close code other than 1000, or a server that vanished is logged with what happened,
  that turn's result is None, and the next utterance connects afresh.

A service is a subclass of `WsSttEngine` (URL, query, headers, timings, its logger) and
one of `WsUtterance` that reads its messages (`on_text`) and names its end-of-audio and
keep-alive messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

import aiohttp
import numpy as np
from yarl import URL

from media.stt.base import Transcript, check_frame

__all__ = ["WsSttEngine", "WsStream", "WsUtterance"]


class WsSttEngine:
    """What a service's engine shares: created once per process, `new_stream()` per call,
    one aiohttp `ClientSession` (unlimited connections, made lazily on the running loop)
    for every utterance of every call; `aclose()` closes it.

    A subclass sets `label`, `service`, `log` and, in its `__init__`, `url`, `params`
    (the query), `batch_bytes`, `final_timeout`, `connect_timeout`, `keepalive_s`; it
    gives `headers()` and `new_utterance()`.
    """

    label: str  # the prefix of its log lines ("deepgram")
    service: str  # its name in prose ("Deepgram")
    log: logging.Logger
    url: str
    params: Any
    batch_bytes: int
    final_timeout: float
    connect_timeout: float
    keepalive_s: float
    _session: aiohttp.ClientSession | None = None
    _session_loop: asyncio.AbstractEventLoop | None = None

    def headers(self) -> dict[str, str]:
        raise NotImplementedError

    def new_utterance(self, number: int) -> WsUtterance:
        raise NotImplementedError

    def new_stream(self) -> WsStream:
        return WsStream(self)

    def check_url(self) -> None:
        url = URL(self.url)
        if url.scheme not in ("ws", "wss") or not url.host:
            raise RuntimeError(f"{self.service} URL {self.url!r} is not a ws:// or wss:// URL")

    def connect_url(self) -> URL:
        return URL(self.url).extend_query(self.params)

    def http(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._session_loop is not loop:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self._session_loop = loop
        return self._session

    async def aclose(self) -> None:
        """Close the shared HTTP session (open sockets of live utterances with it)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


class WsStream:
    """One call's recogniser: a sequence of utterances, each on its own WebSocket."""

    def __init__(self, engine: WsSttEngine) -> None:
        self._engine = engine
        self._utt: WsUtterance | None = None
        self._finishing: set[WsUtterance] = set()  # ended turns still awaiting their text
        self._count = 0
        self._closed = False

    def feed(self, frame: np.ndarray) -> list[Transcript]:
        self._check_open()
        check_frame(frame)
        if not len(frame):
            return []
        if self._utt is None:
            self._count += 1
            self._utt = self._engine.new_utterance(self._count)
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


class WsUtterance:
    """One turn's audio on one WebSocket: a sender task and a receiver task."""

    def __init__(self, engine: WsSttEngine, number: int) -> None:
        self.engine = engine
        self.number = number
        self._buf = bytearray()
        self._wake = asyncio.Event()
        self._settled = asyncio.Event()  # the final result is in, or nothing more will come
        self._finishing = False
        self.close_sent = False  # the end-of-audio messages went out
        self.failed: str | None = None
        self.finals: list[str] = []
        self._partials: list[Transcript] = []
        self._last_partial = ""
        self.result: asyncio.Future[Transcript | None] = (
            asyncio.get_running_loop().create_future())
        self.task = asyncio.create_task(self._run(), name=f"{engine.label}-utterance-{number}")

    # -- what a service's subclass provides ----------------------------------------------
    def on_text(self, data: str) -> None:
        """One text message from the service: call `hypothesis`, `settled`, `fail`."""
        raise NotImplementedError

    def end_messages(self) -> list[str]:
        """Text messages that end the audio (after the last audio batch)."""
        raise NotImplementedError

    def keepalive_message(self) -> str | None:
        """Sent when no audio flowed for `keepalive_s` (None: send nothing)."""
        return None

    def refused(self, exc: aiohttp.WSServerHandshakeError) -> str:
        """What to log when the handshake is refused."""
        return f"{self.engine.service} refused the connection (HTTP {exc.status}: {exc.message})"

    # -- for the subclass's `on_text` ----------------------------------------------------
    def hypothesis(self, text: str, final: bool) -> None:
        """A result: `final` ones are kept; every change of the whole becomes a partial."""
        text = text.strip()
        if final:
            if text:
                self.finals.append(text)
            whole = " ".join(self.finals)
        else:
            whole = " ".join([*self.finals, text]) if text else ""
        if whole and whole != self._last_partial:
            self._last_partial = whole
            self._partials.append(Transcript(whole, False))

    def settled(self) -> None:
        """The service said nothing more will come for this utterance."""
        self._settled.set()

    def fail(self, why: str, level: int = logging.WARNING) -> None:
        if self.failed is None:
            self.failed = why
            self._buf.clear()
            self.engine.log.log(level, "%s: utterance %d: %s; this turn has no transcript",
                                self.engine.label, self.number, why)
        self._settled.set()
        self._wake.set()

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
        text = " ".join(self.finals).strip()
        return Transcript(text, True) if text else None

    def cancel(self) -> None:
        self._settle(None)
        self.task.cancel()

    # -- the utterance's tasks -----------------------------------------------------------
    def _settle(self, result: Transcript | None) -> None:
        if not self.result.done():
            self.result.set_result(result)

    async def _run(self) -> None:
        ws: aiohttp.ClientWebSocketResponse | None = None
        receiver: asyncio.Task[None] | None = None
        try:
            ws = await self._connect()
            if ws is None:
                return
            receiver = asyncio.create_task(self._receive(ws),
                                           name=f"{self.engine.label}-receive-{self.number}")
            await self._send_audio(ws)
            if self.failed is None:
                await self._finalize(ws)
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:
            self.fail(f"connection to {self.engine.url} lost while sending "
                      f"({type(exc).__name__}: {exc})")
        except Exception:  # a bug here must not take the call down
            self.engine.log.exception("%s: utterance %d failed", self.engine.label,
                                      self.number)
            self.fail("internal error")
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
        try:
            async with asyncio.timeout(eng.connect_timeout):
                return await eng.http().ws_connect(
                    eng.connect_url(), headers=eng.headers(), autoping=True, compress=0,
                    timeout=aiohttp.ClientWSTimeout(ws_close=1.0))
        except aiohttp.WSServerHandshakeError as exc:
            self.fail(self.refused(exc), logging.ERROR)
        except TimeoutError:
            self.fail(f"no connection to {eng.url} within {eng.connect_timeout:g} s")
        except (aiohttp.ClientError, OSError) as exc:
            self.fail(f"cannot connect to {eng.url} ({type(exc).__name__}: {exc})")
        return None

    async def _send_audio(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Send full batches as they fill; on finish, the rest. Keep-alives when idle."""
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
                keepalive = self.keepalive_message()
                if keepalive is not None:
                    await ws.send_str(keepalive)

    async def _finalize(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        for message in self.end_messages():
            await ws.send_str(message)
        self.close_sent = True
        try:
            async with asyncio.timeout(self.engine.final_timeout):
                await self._settled.wait()
        except TimeoutError:
            self.engine.log.warning(
                "%s: utterance %d: no final result within %g s; using %s", self.engine.label,
                self.number, self.engine.final_timeout,
                "the segments final so far" if self.finals else "nothing")
        self._settle(None if self.failed else self.final_so_far())

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        label, service = self.engine.label, self.engine.service
        try:
            while True:
                msg = await ws.receive()
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self.on_text(msg.data)
                    if self.failed is not None:
                        return
                elif msg.type == aiohttp.WSMsgType.BINARY:
                    self.engine.log.debug("%s: ignoring a binary message", label)
                elif msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                  aiohttp.WSMsgType.CLOSED):
                    code = ws.close_code
                    reason = msg.extra if msg.type == aiohttp.WSMsgType.CLOSE else ""
                    if code == 1000 and self.close_sent:
                        self._settled.set()
                    elif code in (None, 1006) or msg.type == aiohttp.WSMsgType.CLOSED:
                        self.fail(f"{service} ({self.engine.url}) went away without "
                                  "closing the connection")
                    else:
                        self.fail(f"{service} closed the connection: code {code} {reason or ''}"
                                  .rstrip())
                    return
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    self.fail(f"connection to {service} failed ({msg.data!r})")
                    return
        finally:
            self._wake.set()
