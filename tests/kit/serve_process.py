"""Test kit: `atoms-gateway serve` as a real process on 127.0.0.1 (for tests that kill,
drain or scale it out), ready once its `/ready` answers 200."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
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
