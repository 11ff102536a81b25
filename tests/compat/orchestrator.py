"""An Atoms orchestrator for tests, built from the published SDK's event models: it builds
events with `smallestai.atoms.agent.events`, encodes them as the published `EventCodec`
does (JSON `{"type", ...model_dump}` in binary frames), and decodes what comes back with the
published `SDKEvent.parse_obj` where the published registry knows the type.

A script is a list of `Step`s: an event to send, then (optionally) a condition on what has
been received to wait for before the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import websockets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from smallestai.atoms.agent import events as pub

PUBLISHED_TYPES = {t for t, _ in pub.TypedModel._subtypes_ if isinstance(t, str)} - {
    "base", "system.base", "agent.base"}


def encode(event: pub.SDKEvent) -> bytes:
    """The published `EventCodec.encode`."""
    return json.dumps({"type": event.type, **event.model_dump(mode="json")}).encode()


def parse_published(data: dict[str, Any]) -> pub.SDKEvent:
    """The published `EventCodec.decode` (raises ValueError on a type it does not know)."""
    return pub.SDKEvent.parse_obj(data)


def init_event(variables: dict[str, Any] | None = None,
               conversation_type: str = "telephonyInbound") -> pub.SDKSystemInitEvent:
    return pub.SDKSystemInitEvent(
        version="1.0",
        session_context=pub.SessionContext(initial_variables=variables or {},
                                           conversation_type=conversation_type))


Until = Callable[[list[dict[str, Any]]], bool]


def saw(etype: str, n: int = 1, **fields: Any) -> Until:
    """Condition: at least `n` received events of `etype` with these field values."""

    def check(received: list[dict[str, Any]]) -> bool:
        hits = [m for m in received if m.get("type") == etype
                and all(m.get(k) == v for k, v in fields.items())]
        return len(hits) >= n

    check.__name__ = f"saw({etype!r}, n={n}, {fields})"
    return check


@dataclass
class Step:
    event: pub.SDKEvent | bytes  # bytes: sent as they are (fields 4.4.0 has no model for)
    until: Until | None = None


@dataclass
class Orchestrator:
    """One WebSocket connection to an agent server's `/ws`."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    frames: list[str] = field(default_factory=list)  # "binary" / "text" per received message
    close_code: int | None = None
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _ws: Any = None
    _reader: asyncio.Task[None] | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self) -> None:
        self._ws = await websockets.connect(self.url, max_size=2**22, open_timeout=5)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self._ws:
                self.frames.append("binary" if isinstance(message, bytes) else "text")
                self.received.append(json.loads(message))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.closed.set()
            self._changed.set()

    async def send(self, event: pub.SDKEvent) -> None:
        await self._ws.send(encode(event))

    async def send_raw(self, message: str | bytes) -> None:
        await self._ws.send(message)

    async def wait(self, until: Until, timeout: float = 10.0) -> None:
        async def loop() -> None:
            while not until(self.received):
                if self.closed.is_set():
                    raise AssertionError(f"connection closed before {until.__name__}; "
                                         f"got {[m.get('type') for m in self.received]}")
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {until.__name__}; got "
                                 f"{[m.get('type') for m in self.received]}") from None

    async def run(self, script: list[Step], timeout: float = 10.0) -> None:
        for step in script:
            if isinstance(step.event, bytes):
                await self.send_raw(step.event)
            else:
                await self.send(step.event)
            if step.until is not None:
                await self.wait(step.until, timeout)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def agent_output(received: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """The agent's output events, comparable across servers: type and text, in order.

    Timestamps and fields one side adds (ours: `severity`/`payload` of `agent.error`) are
    ignored, and so are `agent.llm.response.chunk` events with empty text: the published
    SDK sends one for every chunk `generate_response` yields, "" included; ours skips the
    empty ones (they carry nothing to say)."""
    out: list[tuple[Any, ...]] = []
    for m in received:
        etype = m.get("type", "")
        if not etype.startswith("agent."):
            continue
        if etype == "agent.transcript.update":
            out.append((etype, m.get("role"), m.get("content")))
        elif etype == "agent.llm.response.chunk" and not m.get("text"):
            continue
        elif etype in ("agent.llm.response.chunk", "agent.speak"):
            out.append((etype, m.get("text")))
        elif etype == "agent.error":
            out.append((etype,))
        elif etype == "agent.transfer_call":
            out.append((etype, m.get("transfer_call_number")))
        else:
            out.append((etype,))
    return out
