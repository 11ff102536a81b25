"""RemoteSession: a call's agent running on another machine, reached over the Atoms
event protocol. It offers the voice loop the same three calls as a local
`AgentSession` (`deliver`, `set_output`, `close`), so the loop cannot tell them apart.

One WebSocket per call: `system.init` first (binary JSON frames, as the published SDK
expects), then `agent.ready` within the handshake timeout. Events the agent server
merely echoes back (its Sink forwards everything, input events included) are dropped.

When the agent server fails (refuses, misses the handshake, disconnects mid-call, sends
garbage), the call ends cleanly rather than leaving the caller in silence:

- What the agent already said plays out: audio already queued is not cut, and an LLM
  response it was streaming ends where it broke off (the session emits
  `agent.llm.response.end` for it; otherwise the voice loop would wait for the rest of
  the response before hanging up, for ever).
- Then the caller hears a short apology and the call hangs up: the session emits
  `agent.speak` followed by `agent.end_call`, which the voice loop plays out as any
  agent's hang-up. One ERROR log line names the call and the reason.
- From the failure on, nothing the server sends is played: after a handshake timeout
  the connection is closed, and a late `agent.ready` or late speech is dropped, so
  nothing follows the apology.

An agent server that closes its connection after sending `agent.end_call` or
`agent.transfer_call` has not failed: the call ends (or transfers) as the agent asked,
with no apology.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from agent.events import (
    SDKAgentEndCallEvent,
    SDKAgentLLMResponseEndEvent,
    SDKAgentSpeakEvent,
    SDKAgentTranscriptUpdateEvent,
    SDKEvent,
    SDKSystemInitEvent,
    decode_event,
    encode_event,
)
from gateway.logtext import redact_url
from runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

OutputFn = Callable[[SDKEvent], Awaitable[None]]


class RemoteSession:
    """The session side of one call whose agent lives on an agent server."""

    def __init__(self, url: str, init_event: SDKSystemInitEvent, call_id: str = "",
                 apology: str = "Sorry, something went wrong.",
                 handshake_timeout: float = 10.0) -> None:
        self.url = url
        self.init_event = init_event
        self.call_id = call_id
        self.apology = apology
        self.handshake_timeout = handshake_timeout
        self.context: dict[str, Any] = {}
        self._ws: ClientConnection | None = None
        self._output: OutputFn | None = None
        self._reader: asyncio.Task[None] | None = None
        self._sent_transcripts: Counter[tuple[str, str]] = Counter()
        self._failed = False
        self._closed = False
        self._response_open = False  # an agent.llm.response is streaming (no .end yet)
        self._agent_done = False  # the agent asked to end or transfer the call
        self._closing: asyncio.Task[None] | None = None  # closing the socket after a failure
        self._ready = asyncio.Event()
        self._complete = asyncio.Event()

    @property
    def is_started(self) -> bool:
        return self._ready.is_set()

    def set_output(self, fn: OutputFn | None) -> None:
        self._output = fn

    async def connect(self) -> bool:
        """Open the connection and do the handshake; on failure, arrange the apology."""
        try:
            self._ws = await asyncio.wait_for(
                connect(self.url, max_size=2**22, open_timeout=self.handshake_timeout),
                self.handshake_timeout)
            await self._ws.send(encode_event(self.init_event).encode())
            self._reader = asyncio.create_task(self._read(), name=f"remote:{self.call_id}")
            await asyncio.wait_for(self._ready.wait(), self.handshake_timeout)
            return True
        except (OSError, TimeoutError, WebSocketException) as exc:
            await self._fail(f"agent server {redact_url(self.url)} unavailable: {exc!r}")
            return False

    async def deliver(self, event: SDKEvent) -> None:
        """Send a caller event to the agent server (the first one, `system.init`, connects)."""
        if isinstance(event, SDKSystemInitEvent):
            if self._ws is None and not self._failed:
                self.init_event = event
                await self.connect()
            return
        if self._ws is None or self._failed or self._closed:
            return
        if isinstance(event, SDKAgentTranscriptUpdateEvent):
            self._sent_transcripts[(event.role, event.content)] += 1
        try:
            await self._ws.send(encode_event(event).encode())
        except (OSError, WebSocketException) as exc:
            await self._fail(f"lost the agent server while sending: {exc!r}")

    async def close(self, reason: str = "hangup") -> None:
        if self._closed:
            return
        self._closed = True
        if self._closing is not None:
            await asyncio.gather(self._closing, return_exceptions=True)
        elif self._ws is not None:
            try:
                await self._ws.close()
            except (OSError, WebSocketException):
                pass
        await cancel_and_wait(self._reader)
        self._complete.set()

    async def wait_until_complete(self) -> None:
        await self._complete.wait()

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for message in self._ws:
                if self._failed or self._closed:
                    return  # (late: after a failure nothing more is played)
                try:
                    event = decode_event(message)
                except ValueError as exc:
                    await self._fail(f"agent server sent garbage: {exc}")
                    return
                if event.type == "agent.ready":
                    self._ready.set()
                    continue
                if self._is_echo(event):
                    continue
                self._track(event)
                if self._output is not None:
                    await self._output(event)
        except (OSError, WebSocketException) as exc:
            await self._gone(f"agent server connection lost: {exc!r}")
            return
        await self._gone("agent server closed the connection mid-call")

    def _track(self, event: SDKEvent) -> None:
        """What the agent has going on, for when its server goes away."""
        etype = event.type
        if etype in ("agent.llm.response.start", "agent.llm.response.chunk"):
            self._response_open = True
        elif etype == "agent.llm.response.end":
            self._response_open = False
        elif etype in ("agent.end_call", "agent.transfer_call"):
            self._agent_done = True

    async def _gone(self, reason: str) -> None:
        """The connection ended: a failure, unless the agent had already asked to end or
        transfer the call (then the call goes on to do that, with no apology)."""
        if self._failed or self._closed:
            return
        if not self._agent_done:
            await self._fail(reason)
            return
        log.info("%s: agent server closed the connection after ending or transferring "
                 "the call", self.call_id)
        self._failed = True  # (nothing more to send it)
        await self._end_response()

    async def _end_response(self) -> None:
        """End the LLM response the agent was streaming, where it broke off."""
        if self._response_open and self._output is not None:
            self._response_open = False
            await self._output(SDKAgentLLMResponseEndEvent())

    def _is_echo(self, event: SDKEvent) -> bool:
        """Input events coming back through the remote Sink are not output."""
        if event.type.startswith("system."):
            return True
        if isinstance(event, SDKAgentTranscriptUpdateEvent):
            key = (event.role, event.content)
            if self._sent_transcripts[key]:
                self._sent_transcripts[key] -= 1
                return True
        return False

    async def _fail(self, reason: str) -> None:
        if self._failed or self._closed:
            return
        self._failed = True
        log.error("%s: %s; apologising and ending the call", self.call_id, reason)
        self._ready.set()
        if (self._ws is not None and self._closing is None
                and asyncio.current_task() is not self._reader):
            # (a handshake timeout, a failed send): let go of the server now, so nothing it
            # sends late can follow the apology; in a task, so that a server that does not
            # answer the close cannot hold up the call
            self._closing = asyncio.create_task(self._ws.close(),
                                                name=f"remote-close:{self.call_id}")
        await self._end_response()
        if self._output is not None:
            await self._output(SDKAgentSpeakEvent(text=self.apology))
            await self._output(SDKAgentEndCallEvent())
