"""Streaming cloud STT over Deepgram's live transcription WebSocket (`/v1/listen`).

    stt = DeepgramSTT()            # key from DEEPGRAM_API_KEY; check() names what is missing
    stream = stt.new_stream()      # one per call (cheap: no socket yet)
    partials = stream.feed(frame)  # never blocks: enqueues audio, returns interim results
    final = await stream.end_of_turn_async()   # the turn ends at the call, the text comes later
    stream.close(); await stt.aclose()

One WebSocket per utterance, audio in 100 ms batches, failures contained: the shared
design of `media/stt/ws.py`. Deepgram's part: the query parameters, `Authorization:
Token KEY`, `KeepAlive` while a socket is open and no audio flows for `keepalive_s` (the
service drops a socket after 10 s without data), `Finalize` and `CloseStream` at the end
of a turn, whose result is ready when the result marked `from_finalize` arrives, or when
the server's closing `Metadata` (or the close itself) says nothing more will come.

All utterances of the engine share one aiohttp `ClientSession` (made lazily on the
running loop, unlimited connections); `aclose()` closes it.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from media.frames import SAMPLE_RATE
from media.stt.ws import WsStream, WsSttEngine, WsUtterance

__all__ = ["DeepgramSTT", "DeepgramStream", "DEEPGRAM_URL", "DeepgramOptions", "Options",
           "create", "describe"]

log = logging.getLogger(__name__)

DEEPGRAM_URL = "wss://api.deepgram.com/v1/listen"
_REAL_HOSTS = ("deepgram.com",)
_KEEPALIVE = json.dumps({"type": "KeepAlive"})
_FINALIZE = json.dumps({"type": "Finalize"})
_CLOSE_STREAM = json.dumps({"type": "CloseStream"})


def _flag(value: bool) -> str:
    return "true" if value else "false"


class DeepgramSTT(WsSttEngine):
    """The engine: created once per process; `new_stream()` per call."""

    sample_rate = SAMPLE_RATE
    label, service, log = "deepgram", "Deepgram", log

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

    @property
    def is_real_service(self) -> bool:
        host = URL(self.url).host or ""
        return any(host == h or host.endswith("." + h) for h in _REAL_HOSTS)

    def check(self) -> None:
        """Raise RuntimeError naming what is missing (the API key, a usable URL)."""
        self.check_url()
        if not self.api_key and self.is_real_service:
            raise RuntimeError(
                "Deepgram speech recognition needs an API key: set DEEPGRAM_API_KEY "
                "(or ATOMS_DEEPGRAM_API_KEY), or pass api_key=")

    def new_utterance(self, number: int) -> WsUtterance:
        return _DeepgramUtterance(self, number)

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.api_key}"} if self.api_key else {}


DeepgramStream = WsStream  # one call's recogniser (media/stt/ws.py)


class _DeepgramUtterance(WsUtterance):
    """One turn on one `/v1/listen` socket: Deepgram's messages."""

    def end_messages(self) -> list[str]:
        return [_FINALIZE, _CLOSE_STREAM]

    def keepalive_message(self) -> str | None:
        return _KEEPALIVE

    def refused(self, exc: aiohttp.WSServerHandshakeError) -> str:
        detail = (exc.headers or {}).get("dg-error") or exc.message
        if exc.status in (401, 403):
            return (f"Deepgram rejected the API key (HTTP {exc.status}: {detail}); "
                    "check DEEPGRAM_API_KEY")
        return f"Deepgram refused the connection (HTTP {exc.status}: {detail})"

    def on_text(self, data: str) -> None:
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
            if self.close_sent:
                self.settled()  # sent on CloseStream, after the last results
        elif kind in ("SpeechStarted", "UtteranceEnd"):
            pass
        elif kind == "Error" or "err_code" in msg or "error" in msg:
            detail = (msg.get("description") or msg.get("err_msg") or msg.get("message")
                      or msg.get("error") or data)
            self.fail(f"Deepgram reported an error: {str(detail)[:300]}", logging.ERROR)
        else:
            log.debug("deepgram: ignoring a %r message", kind)

    def _on_results(self, msg: dict[str, Any]) -> None:
        try:
            text = str(msg["channel"]["alternatives"][0].get("transcript") or "").strip()
        except (KeyError, IndexError, TypeError, AttributeError):
            log.warning("deepgram: utterance %d: malformed Results message ignored",
                        self.number)
            return
        self.hypothesis(text, bool(msg.get("is_final")))
        if msg.get("from_finalize"):
            self.settled()


@dataclass(frozen=True)
class DeepgramOptions:
    """What `stt="deepgram"` is made from."""

    api_key: str | None = None  # None: DEEPGRAM_API_KEY
    url: str | None = None  # None: DEEPGRAM_URL
    model: str | None = None  # None: nova-3
    language: str = "en"


Options = DeepgramOptions  # (the factory's name for it: `media.stt.get_engine`)


def create(options: DeepgramOptions) -> DeepgramSTT:
    return DeepgramSTT(api_key=options.api_key, url=options.url or DEEPGRAM_URL,
                       model=options.model or "nova-3", language=options.language)


def describe(options: DeepgramOptions, engine: DeepgramSTT) -> str:
    """The start-up line's words for this engine."""
    return f"deepgram (model {engine.model}, at {engine.url})"
