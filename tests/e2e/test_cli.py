"""Smoke test of the real command line: `atoms-gateway serve` in a subprocess answers a
Twilio call with the demo greeting and exits cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.e2e.clients import TwilioClient
from tests.e2e.harness import HOST, rms_dbfs

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "atoms-gateway"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


async def wait_ready(url: str, proc: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """Poll /ready (another process: there is nothing to await but its answer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            if proc.returncode is not None:
                raise AssertionError(f"atoms-gateway exited with {proc.returncode}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{url} not ready within {timeout} s")


@contextlib.asynccontextmanager
async def serving(log: Path, *args: str, env: dict[str, str | None] | None = None
                  ) -> AsyncIterator[int]:
    """`atoms-gateway serve ARGS` on a free port of HOST, ready; yields the port. On the
    way out it gets SIGTERM and must stop cleanly: exit 0, no traceback in its log (`env`
    entries set or, with None, remove environment variables)."""
    port = free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for key, value in (env or {}).items():
        if value is None:
            full_env.pop(key, None)
        else:
            full_env[key] = value
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(CLI), "serve", "--host", HOST, "--port", str(port), *args, cwd=ROOT,
            stdout=out, stderr=asyncio.subprocess.STDOUT, env=full_env)
    try:
        await wait_ready(f"http://{HOST}:{port}/ready", proc)
        yield port
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = log.read_text(errors="replace")
    assert code == 0, f"exit code {code}\n{text[-2000:]}"
    assert "Traceback" not in text, text[-2000:]


async def serve_fails(*args: str, env: dict[str, str], timeout: float = 60.0
                      ) -> tuple[int | None, str]:
    """`atoms-gateway serve ARGS` that must stop at start-up: (exit code, stderr), and no
    traceback anywhere in its output."""
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "serve", *args, "--host", HOST, "--port", str(free_port()), cwd=ROOT,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert b"Traceback" not in out + err
    return proc.returncode, err.decode()


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_serve_answers_a_call_and_stops_on_sigterm(tmp_path):
    sip_port = free_port()
    log = tmp_path / "serve.log"
    async with serving(log, "--sip-port", str(sip_port)) as port:
        # --host is the address of every listener without one of its own (SIP here)
        assert f"SIP listening on {HOST}:{sip_port}" in log.read_text(errors="replace")
        client = TwilioClient(HOST, port)
        await client.connect()
        await client.start()
        client.start_mic()
        await client.wait_audio(1.0)
        assert not client.problems
        pcm = np.concatenate([f.pcm for f in client.agent_frames])
        assert rms_dbfs(pcm) > -35
        await client.hangup_and_wait()
        assert client.closed.is_set()
        await client.close()


@pytest.mark.skipif(not CLI.exists(), reason="atoms-gateway is not installed in this venv")
async def test_sigterm_drains_a_call_with_a_nul_byte_in_its_id(tmp_path):
    """A caller's id with a NUL byte once made `end_call` raise: the call kept its slot
    and SIGTERM exited 1 at once. Now the call is hung up, recorded under a safe name and
    the process exits 0."""
    folder = tmp_path / "rec"
    async with serving(tmp_path / "serve.log", "--record-dir", str(folder),
                       "--drain-timeout", "0.5") as port:
        client = TwilioClient(HOST, port, call_id="CA\x00nul/../x")
        await client.connect()
        await client.start()
        client.start_mic()
        await client.wait_audio(0.5)
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()
    assert [p.suffix for p in sorted(folder.iterdir())] == [".json", ".wav"]
