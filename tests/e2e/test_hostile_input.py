"""Hostile input over 127.0.0.1 sockets (issue 23, defects 8, 11, 12 and 14): Atoms event
sessions count toward the limits and time out; malformed input of every kind gets a clean
error (a close with a reason, an HTTP 4xx, a SIP 4xx) instead of a traceback; text from the
network is logged with its control characters escaped; callers are told the truth at
shutdown. A well-behaved call alongside (the canary) keeps its audio: its frames are
counted, never timed."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import websockets

from agent.events import SDKSystemInitEvent, encode_event
from tests.e2e.clients import CallClient, TwilioClient, WebClient
from tests.e2e.harness import HOST, Gateway

GOING_AWAY = 1001
UNSUPPORTED_DATA = 1003
TRY_AGAIN_LATER = 1013
FRAME_S = 0.02


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll `predicate` (the gateway's registry has no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def health(gw: Gateway) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http}/health") as resp:
        return dict(await resp.json())


async def canary_call(gw: Gateway) -> CallClient:
    """A well-behaved Twilio call that hears the demo agent's greeting."""
    client = TwilioClient(HOST, gw.port)
    await client.connect()
    await client.start()
    client.start_mic()
    await client.wait_audio(0.2)
    return client


async def canary_keeps_its_audio(canary: CallClient, seconds: float = 0.4) -> None:
    """The canary still receives agent frames: `seconds` of them, counted from now."""
    await canary.wait_audio(seconds, after=canary.loop.time())
    assert not canary.problems, canary.problems


class AtomsPeer:
    """An Atoms event-protocol client of `/ws` (an orchestrator): JSON events in binary
    frames, `system.init` first."""

    def __init__(self, gw: Gateway) -> None:
        self.url = f"{gw.ws}/ws"
        self.received: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason = ""
        self.closed = asyncio.Event()
        self._changed = asyncio.Event()
        self.ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def connect(self, init: bool = True) -> None:
        self.ws = await websockets.connect(self.url, open_timeout=5, max_size=2**22)
        self._task = asyncio.create_task(self._receive())
        if init:
            await self.ws.send(encode_event(SDKSystemInitEvent()).encode())

    async def _receive(self) -> None:
        try:
            async for message in self.ws:
                self.received.append(json.loads(message))
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = self.ws.close_code, self.ws.close_reason or ""
            self.closed.set()
            self._changed.set()

    async def send(self, message: str | bytes) -> None:
        await self.ws.send(message)

    async def wait_for(self, etype: str, timeout: float = 10.0) -> dict[str, Any]:
        async def find() -> dict[str, Any]:
            while True:
                for m in self.received:
                    if m.get("type") == etype:
                        return m
                if self.closed.is_set():
                    raise AssertionError(f"closed before {etype} ({self.close_code} "
                                         f"{self.close_reason}): {self.received}")
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(find(), timeout)

    def errors(self) -> list[str]:
        return [m.get("message", "") for m in self.received if m.get("type") == "agent.error"]

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


# ------------------------------------------------------------------ defect 8: Atoms sessions


async def test_atoms_sessions_count_toward_max_calls_and_health(gateway_factory):
    gw = await gateway_factory(max_calls=2)
    canary = await canary_call(gw)
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")
    status = await health(gw)
    assert status["active_calls"] == 2 and status["event_sessions"] == 1, status
    # no room left: neither another Atoms session nor another call is taken
    extra = AtomsPeer(gw)
    await extra.connect()
    await asyncio.wait_for(extra.closed.wait(), 5)
    assert extra.close_code == TRY_AGAIN_LATER and "limit" in extra.close_reason
    assert any("limit" in e for e in extra.errors()), extra.received
    call = TwilioClient(HOST, gw.port)
    await call.connect()
    await call.start()
    await asyncio.wait_for(call.closed.wait(), 5)
    assert call.close_code == TRY_AGAIN_LATER and "limit" in call.close_reason
    await call.close()
    await extra.close()
    await canary_keeps_its_audio(canary)
    # the session's end frees its slot
    await peer.close()
    await until(lambda: not gw.app.sessions, 5, "the Atoms session to end")
    status = await health(gw)
    assert status["active_calls"] == 1 and status["event_sessions"] == 0, status
    again = AtomsPeer(gw)
    await again.connect()
    await again.wait_for("agent.ready")
    await again.close()
    await canary.hangup_and_wait()
    await canary.close()


async def test_an_idle_atoms_session_times_out(gateway_factory, caplog):
    caplog.set_level(logging.WARNING, logger="gateway")
    gw = await gateway_factory(idle_timeout=0.6)
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")  # and then the peer says nothing
    await asyncio.wait_for(peer.closed.wait(), 10)
    assert peer.close_code == GOING_AWAY and "idle" in peer.close_reason
    assert any("idle timeout" in e for e in peer.errors()), peer.received
    await until(lambda: not gw.app.sessions, 5, "the idle session to leave the registry")
    assert (await health(gw))["active_calls"] == 0
    await peer.close()


async def test_shutdown_tells_callers_the_gateway_is_going_away(gateway_factory):
    gw = await gateway_factory()
    twilio = await canary_call(gw)
    web = WebClient(HOST, gw.port)
    await web.connect()
    await web.start()
    await web.wait_audio(0.1)
    peer = AtomsPeer(gw)
    await peer.connect()
    await peer.wait_for("agent.ready")
    await gw.app.stop(drain_timeout=0.2)  # all three are still up when the drain ends
    for client in (twilio, web):
        await asyncio.wait_for(client.closed.wait(), 5)
        assert client.close_code == GOING_AWAY, (client.provider, client.close_code)
        assert "shutting down" in client.close_reason, client.close_reason
        assert "agent" not in client.close_reason
    ends = [c.msg for c in web.controls if c.kind == "end"]
    assert ends and "shutting down" in ends[-1]["reason"], ends
    await asyncio.wait_for(peer.closed.wait(), 5)
    assert peer.close_code == GOING_AWAY and any("shutting down" in e for e in peer.errors())
    assert not gw.app.calls and not gw.app.sessions
    for client in (twilio, web):
        await client.close()
    await peer.close()
