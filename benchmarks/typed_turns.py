"""Typed turns on `/ws`: what 1,000 `{"type": "text"}` turns cost the server.

    .venv/bin/python benchmarks/typed_turns.py [--turns 1000] [--port 8767] [--no-limit]

Starts `atoms-gateway serve` (the demo agent) as a child process on 127.0.0.1, opens one
web-client call on `/ws` and sends `--turns` typed turns as fast as the socket takes them,
reading everything the gateway sends back. Printed: the turns taken and refused (the
per-call typed-turn budget), the bytes the gateway sent (JSON and audio), the server's RSS
before the call, once every turn is answered, and after hang-up, and the wall time the
turns took. `--no-limit` lifts the typed-turn budget (ATOMS_TEXT_TURNS_PER_S), so that
every turn reaches the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import aiohttp


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


async def wait_ready(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            try:
                async with http.get(url + "/ready") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit("the gateway did not become ready")


async def run(turns: int, port: int, pid: int) -> None:
    base = f"http://127.0.0.1:{port}"
    await wait_ready(base)
    rss0 = rss_mb(pid)
    received = {"bytes": 0, "json": 0, "audio": 0, "requests": 0, "request_bytes": 0,
                "refused": 0}
    async with aiohttp.ClientSession() as http:
        ws = await http.ws_connect(base.replace("http", "ws") + "/ws", max_msg_size=0)
        await ws.send_str(json.dumps({"type": "start", "sample_rate": 16000}))
        answered = asyncio.Event()

        async def reader() -> None:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    received["bytes"] += len(msg.data)
                    received["audio"] += len(msg.data)
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    received["bytes"] += len(msg.data)
                    received["json"] += len(msg.data)
                    if '"system.llm.request"' in msg.data:
                        received["requests"] += 1
                        received["request_bytes"] += len(msg.data)
                    elif "typed turn dropped" in msg.data:
                        received["refused"] += 1
                    if received["requests"] + received["refused"] >= turns:
                        answered.set()

        task = asyncio.create_task(reader())
        t0 = time.perf_counter()
        for i in range(turns):
            await ws.send_str(json.dumps({"type": "text", "text": f"hello number {i}"}))
        try:
            await asyncio.wait_for(answered.wait(), 600)
        except TimeoutError:
            pass
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(1.0)
        rss1 = rss_mb(pid)
        await ws.send_str(json.dumps({"type": "hangup"}))
        await ws.close()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(3.0)
    rss2 = rss_mb(pid)
    print(f"turns sent: {turns}; taken (system.llm.request seen by the client): "
          f"{received['requests']}; refused: {received['refused']}")
    print(f"bytes sent by the gateway: {received['bytes'] / 1e6:.2f} MB "
          f"(JSON {received['json'] / 1e6:.2f} MB, of it system.llm.request "
          f"{received['request_bytes'] / 1e6:.2f} MB; audio {received['audio'] / 1e6:.2f} MB)")
    print(f"server RSS: {rss0:.0f} MB before, {rss1:.0f} MB after the turns "
          f"(+{rss1 - rss0:.0f}), {rss2:.0f} MB after hang-up")
    print(f"time to answer every turn: {elapsed:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--port", type=int, default=8767)
    parser.add_argument("--no-limit", action="store_true", help="lift the typed-turn budget")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if args.no_limit:
        env.update(ATOMS_TEXT_TURNS_PER_S="1000000", ATOMS_TEXT_TURN_BURST="1000000")
    server = subprocess.Popen(
        [sys.executable, "-m", "gateway.cli", "--log-level", "WARNING", "serve",
         "--host", "127.0.0.1", "--port", str(args.port)],
        env=env)
    try:
        asyncio.run(run(args.turns, args.port, server.pid))
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()


if __name__ == "__main__":
    main()
