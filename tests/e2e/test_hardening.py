"""Hostile clients over 127.0.0.1 sockets (issue 23): caller-chosen call ids never become
keys or file names, `end_call` always releases the call, and a well-behaved call alongside
keeps its audio."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.clients import CLIENTS, CallClient, TwilioClient
from tests.e2e.harness import HOST, Gateway, listed

TRY_AGAIN_LATER = 1013
SAFE_FILE = re.compile(r"^[A-Za-z0-9_-]+\.(wav|json)$")
ID_PROVIDERS = ["twilio", "telnyx", "plivo", "exotel", "vonage"]  # the caller picks the id


async def until(predicate: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll `predicate` (the gateway's registry has no event to await)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.02)


async def active_calls(gw: Gateway) -> int:
    async with aiohttp.ClientSession() as http, http.get(f"{gw.http}/health") as resp:
        return int((await resp.json())["active_calls"])


async def open_call(gw: Gateway, provider: str, call_id: str | None = None) -> CallClient:
    client = CLIENTS[provider](HOST, gw.port, call_id=call_id)
    await client.connect()
    await client.start()
    client.start_mic()
    return client


async def end(gw: Gateway, client: CallClient) -> None:
    await client.hangup_and_wait()
    await client.close()


@pytest.mark.parametrize("provider", ID_PROVIDERS)
async def test_call_ids_cannot_escape_the_record_dir(gateway_factory, tmp_path, provider):
    folder = tmp_path / "rec"
    gw = await gateway_factory(record_dir=str(folder))
    hostile = ["../escaped", str(tmp_path / "absolute"), "..", "a/../../b", "x" * 5000]
    clients = [await open_call(gw, provider, call_id) for call_id in hostile]
    for client in clients:
        await client.wait_audio(0.1)
    for client in clients:
        await end(gw, client)
    await until(lambda: not gw.app.calls, 10, "every call to end")
    outside = sorted(str(p) for p in tmp_path.rglob("*") if p.parent != folder and p != folder)
    assert outside == [], f"recordings escaped {folder}: {outside}"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 * len(hostile)  # a WAV and a timeline per call, none shared
    assert all(SAFE_FILE.match(n) and len(n) <= 100 for n in names), names


async def test_nul_byte_in_a_call_id_does_not_leak_the_call(gateway_factory, tmp_path):
    gw = await gateway_factory(record_dir=str(tmp_path), max_calls=1)
    client = await open_call(gw, "twilio", "CA\x00nul")
    await client.wait_audio(0.1)
    await end(gw, client)
    await until(lambda: not gw.app.calls, 5, "the call with a NUL in its id to end")
    assert await active_calls(gw) == 0
    # its slot is free again: the next call is taken and hears the agent
    canary = await open_call(gw, "twilio")
    await canary.wait_audio(0.2)
    assert {p.suffix for p in tmp_path.iterdir()} == {".wav", ".json"}
    await end(gw, canary)


async def test_shutdown_drains_a_call_with_a_nul_byte_in_its_id(gateway_factory, tmp_path):
    gw = await gateway_factory(record_dir=str(tmp_path))
    client = await open_call(gw, "telnyx", "v3:\x00\x00")
    await client.wait_audio(0.1)
    await gw.app.stop(drain_timeout=0.2)  # the call is still up: it is hung up, then ended
    assert not gw.app.calls
    await asyncio.wait_for(client.closed.wait(), 5)
    assert len(list(tmp_path.glob("*.wav"))) == 1
    await client.close()


async def test_duplicate_call_ids_count_toward_max_calls(gateway_factory, tmp_path):
    gw = await gateway_factory(record_dir=str(tmp_path), max_calls=2)
    first = await open_call(gw, "twilio", "CAsame")
    second = await open_call(gw, "twilio", "CAsame")
    for client in (first, second):
        await client.wait_audio(0.2)
    assert await active_calls(gw) == 2
    third = TwilioClient(HOST, gw.port, call_id="CAsame")
    await third.connect()
    await third.start()
    await asyncio.wait_for(third.closed.wait(), 5)
    assert third.close_code == TRY_AGAIN_LATER and "limit" in third.close_reason
    await third.close()
    # the two calls are kept apart: both still hear the agent
    loop = asyncio.get_running_loop()
    for client in (first, second):
        await client.wait_audio(0.2, after=loop.time())
    await end(gw, first)
    await until(lambda: len(gw.app.calls) == 1, 5, "the first call to end")
    assert listed(gw, "CAsame")  # the second one is still up
    assert await active_calls(gw) == 1
    await end(gw, second)
    await until(lambda: not gw.app.calls, 5, "the second call to end")
    wavs = sorted(Path(tmp_path).glob("*.wav"))
    assert len(wavs) == 2 and all(p.name.startswith("CAsame-") for p in wavs), wavs
