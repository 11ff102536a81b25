"""Test kit: `atoms-gateway serve` as a real process on 127.0.0.1 (for tests that kill,
drain or scale it out), ready once its `/ready` answers 200."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "atoms-gateway"
HOST = "127.0.0.1"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """One `serve` process: its HTTP port, its log file."""

    proc: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        """Send `sig` and wait for the exit (killed if it outlasts `timeout`)."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        return self.proc.returncode  # type: ignore[return-value]


async def start_serve(log: Path, *args: str, env: dict[str, str] | None = None,
                      port: int | None = None, timeout: float = 60.0) -> Served:
    """`atoms-gateway serve --host 127.0.0.1 --port PORT ARGS`, once ready."""
    port = port or free_tcp_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    with open(log, "wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(CLI), "serve", "--host", HOST, "--port", str(port), *args, cwd=ROOT,
            stdout=out, stderr=asyncio.subprocess.STDOUT, env=full_env)
    served = Served(proc, port, log)
    try:
        await wait_ready(served, timeout)
    except BaseException:
        await served.stop(signal.SIGKILL)
        raise
    return served


async def wait_ready(served: Served, timeout: float) -> None:
    """Poll /ready (another process: there is nothing to await but its answer)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            if served.proc.returncode is not None:
                raise AssertionError(f"atoms-gateway exited with {served.proc.returncode}:\n"
                                     f"{served.text()[-3000:]}")
            try:
                async with http.get(f"{served.url}/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"{served.url}/ready not ready within {timeout} s:\n"
                         f"{served.text()[-3000:]}")


async def wait_url_ready(url: str, proc: asyncio.subprocess.Process,
                         timeout: float = 30.0) -> None:
    """Poll `url` until it answers 200 (another process: there is nothing to await but
    its answer)."""
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
    port = free_tcp_port()
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
        await wait_url_ready(f"http://{HOST}:{port}/ready", proc)
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
        str(CLI), "serve", *args, "--host", HOST, "--port", str(free_tcp_port()), cwd=ROOT,
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert b"Traceback" not in out + err
    return proc.returncode, err.decode()
