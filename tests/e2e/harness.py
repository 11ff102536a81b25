"""Harness of the end-to-end tests: an `AtomsApp` served on 127.0.0.1 in the caller's event
loop, with a setup handler that wraps the demo agent and records every session and every event
its hooks see, so a test can await what happened inside the call."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from media.resample import StreamResampler
from tests.kit.speech import speech, trim_silence

if TYPE_CHECKING:
    from tests.kit.clients import CallClient

HOST = "127.0.0.1"


@dataclass
class Seen:
    t: float  # event-loop time the hook ran
    event: Any


@dataclass
class Recorder:
    """Sessions made by the setup handler and the events their hooks saw."""

    sessions: dict[str, Any] = field(default_factory=dict)
    events: dict[str, list[Seen]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def wrap(self, setup: Callable[[Any], Awaitable[None]]) -> Callable[[Any], Awaitable[None]]:
        async def recording_setup(session: Any) -> None:
            if session.session_id != "dry-run":
                self.sessions[session.session_id] = session
                self.events[session.session_id] = []
                session.on_event("*")(functools.partial(self._hook, session.session_id))
                self._poke()
            await setup(session)

        return recording_setup

    def _hook(self, sid: str, session: Any, event: Any) -> None:
        self.events[sid].append(Seen(asyncio.get_running_loop().time(), event))
        self._poke()

    def _poke(self) -> None:
        self._changed.set()

    async def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """Until `predicate()` is truthy (re-checked whenever a session or event arrives)."""

        async def loop() -> Any:
            while True:
                value = predicate()
                if value:
                    return value
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}") from None

    async def session(self, sid: str, timeout: float = 10.0) -> Any:
        return await self.wait(lambda: self.sessions.get(sid), timeout, f"session {sid}")

    def find(self, sid: str, etype: str, after: float = 0.0, **fields: Any) -> Seen | None:
        for seen in self.events.get(sid, []):
            ev = seen.event
            if ev.type == etype and seen.t >= after and all(
                    _matches(getattr(ev, k, None), v) for k, v in fields.items()):
                return seen
        return None

    async def event(self, sid: str, etype: str, timeout: float = 10.0, after: float = 0.0,
                    **fields: Any) -> Seen:
        return await self.wait(lambda: self.find(sid, etype, after, **fields), timeout,
                               f"{etype} {fields or ''} in {sid}")

    def types(self, sid: str) -> list[str]:
        return [s.event.type for s in self.events.get(sid, [])]


def _matches(value: Any, want: Any) -> bool:
    if callable(want):
        return bool(want(value))
    return value == want


@dataclass
class Gateway:
    app: Any
    port: int
    rec: Recorder

    @property
    def http(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://{HOST}:{self.port}"


def listed(gw: Gateway, call_id: str) -> bool:
    """The gateway lists a call with this caller's id (its registry is keyed by ids of
    its own)."""
    return any(c.call_id == call_id for c in gw.app.calls.values())


def demo_phrases() -> list[str]:
    from gateway.demo import PHRASES

    return list(PHRASES)


async def start_gateway(setup: Callable[[Any], Awaitable[None]] | None = None,
                        record: bool = True, **settings: Any) -> Gateway:
    """An AtomsApp on 127.0.0.1 (ephemeral port) whose sessions are recorded."""
    from gateway.app import AtomsApp
    from gateway.demo import setup as demo_setup

    rec = Recorder()
    handler = setup or demo_setup
    if record:
        handler = rec.wrap(handler)
    settings.setdefault("stt_phrases", demo_phrases())
    settings.setdefault("host", HOST)
    app = AtomsApp(setup_handler=handler, **settings)
    port = await app.start(HOST, 0)
    return Gateway(app, port, rec)


@functools.lru_cache(maxsize=32)
def utterance(text: str, rate: int) -> np.ndarray:
    """espeak-ng speech at `rate`, leading and trailing silence trimmed."""
    return trim_silence(speech(text, rate=rate))


def rms_dbfs(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64)
    return 20 * np.log10(max(np.sqrt(np.mean(x * x)), 1e-9) / 32768.0)


def smoothness(pcm: np.ndarray) -> float:
    """Lag-1 autocorrelation: high for voice (0.7 at 8 kHz, 0.9 at 16 kHz), low for the
    noise that decoding with the wrong codec or byte order gives."""
    x = pcm.astype(np.float64)
    x -= x.mean()
    return float((x[1:] * x[:-1]).sum() / max((x * x).sum(), 1e-9))


CONFUSABLE = {"pcmu": "pcma", "pcma": "pcmu", "l16": "l16be", "l16be": "l16"}


def codec_margin(pcm: np.ndarray, codec: str) -> tuple[float, float]:
    """(smoothness decoded as `codec`, smoothness of the same bytes decoded as the codec it
    is most easily confused with)."""
    from tests.kit.clients import decode, encode

    wire = encode(codec, pcm)  # G.711 and L16 round-trip decoded audio to the same bytes
    return smoothness(pcm), smoothness(decode(CONFUSABLE[codec], wire))


async def wait_quiet(client: CallClient, quiet: float = 2.5, timeout: float = 40.0) -> None:
    """Until agent audio has arrived and then stopped for `quiet` seconds (the gateway
    paces its audio in real time, so a pause this long means the utterance is over)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        seen = len(client.agent_frames)
        await asyncio.sleep(quiet)
        if seen and len(client.agent_frames) == seen:
            return
    raise AssertionError(f"agent audio did not pause within {timeout} s")


def upsample(pcm8k: np.ndarray) -> np.ndarray:
    up = StreamResampler(8000, 16000)
    return np.concatenate((up.process(pcm8k), up.flush()))
