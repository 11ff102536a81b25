"""What a transport needs of the server that hosts its calls: `CallHost`, and `CallRefused`.

Transports (`gateway.transports`) are typed against this small protocol rather than
against `AtomsApp`, so they never import `gateway.app`, and `gateway.app` can import them
at the top: nothing imports in a circle. This module is a leaf: it imports nothing of the
gateway at run time.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from gateway.logtext import printable

if TYPE_CHECKING:
    from aiohttp import web

    from agent.events import SDKSystemInitEvent
    from agent.session import AgentSession
    from gateway.call import Call, CallSettings, Transport
    from gateway.media_tick import MediaTick
    from gateway.settings import Settings
    from runtime.clock import Clock


class CallRefused(Exception):
    """A new call cannot be taken (limit reached, or the server is draining)."""


class EventSession(Protocol):
    """What the host needs of an Atoms event-protocol session on /ws
    (`gateway.transports.atoms_ws.AtomsPeer`): to wait for its end, and to end it."""

    async def wait_closed(self) -> None: ...

    async def close(self, reason: str) -> None: ...


class CallHost(Protocol):
    """The server as its transports see it (`gateway.app.AtomsApp` is one)."""

    settings: Settings
    media_tick: MediaTick  # paces every ticked transport's audio (`gateway.media_tick`)
    calls: dict[str, Call]  # the call registry, by `Call.gateway_id`
    draining: bool  # shutting down: new calls are refused
    setup_handler: Callable[[AgentSession], Awaitable[None]]
    web: web.Application  # where the HTTP and WebSocket routes go

    @property
    def active(self) -> int:
        """Calls and Atoms event sessions now: what `max_calls` counts."""
        ...

    async def open_call(
        self,
        transport: Transport,
        *,
        context: dict[str, Any] | None = None,
        init_event: SDKSystemInitEvent | None = None,
        call_id: str | None = None,
        clock: Clock | None = None,
        call_settings: CallSettings | None = None,
        far_end_confirms: bool = False,
    ) -> Call:
        """Start a call on `transport` (`CallRefused` when there is no room)."""
        ...

    async def end_call(self, call: Call, reason: str) -> None:
        """The transport is gone: close the call and forget it (never raises)."""
        ...

    def add_session(self, session: EventSession) -> str:
        """Register an Atoms event session (`CallRefused` when there is no room)."""
        ...

    def remove_session(self, key: str) -> None: ...

    def on_start(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` once the server listens (extra listeners: AudioSocket, SIP)."""
        ...

    def on_stop(self, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` at shutdown, after the drain."""
        ...


_LOG_CHARS = 80


def call_label(call_id: str, gateway_id: str) -> str:
    """How a call is named in log lines: the caller's id (control characters escaped,
    bounded: `printable`), and the gateway's id when it differs."""
    shown = printable(call_id, _LOG_CHARS)
    return shown if call_id == gateway_id else f"{shown} [{gateway_id}]"
