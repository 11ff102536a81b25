"""The Atoms event protocol on `/ws`: an orchestrator (or a text chat) drives an agent
session hosted here with JSON events, exactly as the published SDK's `AtomsApp` serves
them: `system.init` first, `agent.ready` after `start()`, every event that reaches the
Sink sent as JSON in binary frames, and events from the peer delivered at Root.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from agent.events import (
    SDKAgentErrorEvent,
    SDKEvent,
    SDKSystemInitEvent,
    decode_event,
    encode_event,
)
from agent.session import AgentSession
from gateway.audio_edge import audio_problem
from gateway.host import CallHost, CallRefused
from gateway.idle import IdleTimer
from gateway.logtext import printable

log = logging.getLogger(__name__)


def session_context_dict(init: SDKSystemInitEvent) -> dict[str, Any]:
    """`session.context` pre-filled from a `system.init`."""
    sc = init.session_context
    caller = sc.caller
    ctx: dict[str, Any] = {"conversation_type": sc.conversation_type.value,
                           "custom_parameters": dict(sc.initial_variables)}
    if caller is not None:
        ctx.update({"caller": caller.user_number, "callee": caller.agent_number,
                    "call_id": caller.call_id, "direction": caller.direction})
    ctx.update(sc.initial_variables)
    return ctx


async def send_error(ws: web.WebSocketResponse, message: str, severity: str = "fatal",
                     binary: bool = True) -> None:
    """An `agent.error` event to the peer (binary frames for Atoms peers, text for pages)."""
    if ws.closed:
        return
    text = encode_event(SDKAgentErrorEvent(message=message, severity=severity))  # type: ignore[arg-type]
    if binary:
        await ws.send_bytes(text.encode())
    else:
        await ws.send_str(text)


class AtomsPeer:
    """One Atoms event-protocol connection, as the app's registry sees it (`EventSession`):
    it counts toward `max_calls` and /health, and shutdown can end it."""

    def __init__(self, ws: web.WebSocketResponse) -> None:
        self.ws = ws
        self.closed = asyncio.Event()
        self.reason = "peer disconnected"

    async def wait_closed(self) -> None:
        await self.closed.wait()

    async def close(self, reason: str) -> None:
        """End the session from our side: an `agent.error` saying why, then a close."""
        self.reason = reason
        await send_error(self.ws, reason)
        await self.ws.close(code=WSCloseCode.GOING_AWAY, message=reason.encode()[:120])


async def serve_atoms_protocol(app: CallHost, ws: web.WebSocketResponse,
                               init: SDKSystemInitEvent) -> web.WebSocketResponse:
    """Host one agent session for a peer that already sent `system.init`.

    The session takes a `max_calls` slot (refused with an `agent.error` and close code
    1013 when there is none) and ends after `idle_timeout` seconds without a message from
    the peer."""
    peer = AtomsPeer(ws)
    try:
        session_id = app.add_session(peer)
    except CallRefused as exc:
        log.warning("Atoms event session refused: %s", exc)
        await send_error(ws, f"refused: {exc}")
        await ws.close(code=WSCloseCode.TRY_AGAIN_LATER, message=str(exc).encode()[:120])
        return ws
    try:
        return await _serve(app, ws, init, peer, session_id)
    finally:
        app.remove_session(session_id)
        peer.closed.set()
        log.info("%s: Atoms event session ended (%s); %d active", session_id, peer.reason,
                 app.active)


async def _serve(app: CallHost, ws: web.WebSocketResponse, init: SDKSystemInitEvent,
                 peer: AtomsPeer, session_id: str) -> web.WebSocketResponse:
    session = AgentSession(session_id=session_id, init_event=init,
                           context=session_context_dict(init))

    async def output(event: SDKEvent) -> None:
        if not ws.closed:
            await ws.send_bytes(encode_event(event).encode())

    async def close_idle() -> None:  # (not `idle.timeout`: a timer-function cycle)
        after = app.settings.idle_timeout
        log.warning("%s: no event from the peer for %.0f s; closing", session_id, after)
        await peer.close(f"idle timeout after {after:.0f} s")

    session.set_output(output)
    setup = asyncio.create_task(app.setup_handler(session), name=f"setup:{session_id}")
    started = asyncio.create_task(session.wait_until_started())
    await asyncio.wait({setup, started}, return_when=asyncio.FIRST_COMPLETED)
    started.cancel()
    idle = IdleTimer(app.settings.idle_timeout, close_idle)
    try:
        if not session.is_started:
            exc = setup.exception() if setup.done() else None
            peer.reason = "setup failed"
            await send_error(ws, f"setup handler failed: {exc!r}" if exc else
                             "setup handler returned without starting the session")
            await ws.close(code=WSCloseCode.INTERNAL_ERROR, message=b"setup failed")
            return ws
        log.info("%s: Atoms event session started (%s); %d active", session_id,
                 init.session_context.conversation_type.value, app.active)
        async for msg in ws:
            idle.touch()
            if idle.fired:
                break
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                event = decode_event(msg.data)
                problem = (audio_problem(event) if event.type in
                           ("agent.audio", "system.audio.chunk") else None)
                if problem is not None:
                    raise ValueError(problem)
            except ValueError as exc:
                log.warning("%s: bad event from peer: %s", session_id, printable(exc))
                await send_error(ws, f"bad event: {exc}", severity="warning")
                continue
            await session.deliver(event)
    finally:
        idle.cancel()
        await session.close(peer.reason)
        try:
            await asyncio.wait_for(setup, 5.0)
        except (TimeoutError, asyncio.CancelledError, Exception):
            setup.cancel()
        await idle.wait_idle_done()
        if not ws.closed:
            await ws.close()
    return ws
