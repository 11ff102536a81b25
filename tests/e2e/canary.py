"""The canary of the hostile-input tests (issue 23): a well-behaved Twilio call beside the
attack, hearing the demo agent's greeting (one utterance of about 12 s, so its frames flow
without a pause of the agent's own while a test runs), and the checks the tests share:

- `canary_keeps_its_audio`: more of its audio still arrives, whole frames, no protocol
  fault; returns its largest gap between two frames' arrivals. That gap is wall-clock
  time, which the suite does not assert on a shared machine: set `ATOMS_CANARY_MAX_GAP_MS`
  (issue 23 says 100) on a machine of its own to have every canary check assert it;
- `no_tracebacks`: the clean-log check (nothing at ERROR, no traceback);
- `rss_mb`: this process's resident memory (the gateway runs in the test's process);
- `until`, `health`: polling the gateway's registry, its `/health`.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests.e2e.harness import HOST, Gateway
from tests.kit.clients import CallClient, TwilioClient

MAX_GAP_ENV = "ATOMS_CANARY_MAX_GAP_MS"


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


def largest_gap_ms(canary: CallClient) -> float:
    """The longest time between two consecutive agent frames' arrivals (a message of
    several frames arrives at once), in ms."""
    times = [f.t for f in canary.agent_frames]
    return max((b - a for a, b in zip(times, times[1:], strict=False)), default=0.0) * 1000


async def canary_keeps_its_audio(canary: CallClient, seconds: float = 0.4,
                                 hang_up: bool = False) -> float:
    """The canary still receives agent frames (`seconds` of them, counted from now) with
    no fault; its largest gap so far is returned, and asserted below
    `ATOMS_CANARY_MAX_GAP_MS` when that is set. `hang_up` ends the canary after."""
    await canary.wait_audio(seconds, after=canary.loop.time())
    assert not canary.problems, canary.problems
    gap = largest_gap_ms(canary)
    limit = os.environ.get(MAX_GAP_ENV)
    if limit:
        assert gap < float(limit), f"the canary's audio stopped for {gap:.0f} ms"
    if hang_up:
        await canary.hangup_and_wait()
        await canary.close()
    return gap


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    """Nothing was logged as an error or with a traceback (aiohttp's "Error handling
    request" included): every hostile input got a clean answer."""
    bad = [f"{r.name}: {r.getMessage()}" for r in caplog.records
           if (r.exc_info or r.levelno >= logging.ERROR) and not _earlier_loop(r)]
    assert not bad, bad


def _earlier_loop(record: logging.LogRecord) -> bool:
    """asyncio reporting a task of a loop that is closed: an earlier test's leftover (an
    HTTP client it never closed, collected now), not this test's (its loop is running)."""
    return (record.name == "asyncio" and "Event loop is closed" in record.getMessage()
            and "was never retrieved" in record.getMessage())


def rss_mb() -> float:
    """This process's resident memory, MB (from /proc)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")
