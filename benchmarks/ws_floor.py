"""The WebSocket I/O floor of a Twilio call: what the bare transport costs on one core.

    .venv/bin/python benchmarks/ws_floor.py [--ns 100,200,400] [--seconds 10]

A bare aiohttp server (uvloop, as `atoms-gateway serve` runs) pinned to core 0 does only
what every Media Streams call needs from its transport: it parses each inbound `media`
message (orjson, base64) and, from one shared 20 ms tick, sends each stream one `media`
message of 160 mu-law bytes and a `mark` every fifth frame. No audio is processed. N
clients on core 1 send Twilio-shaped `media` messages at real-time pace and read what
comes back.

Printed per N: the server's share of its core and its CPU-ms per call-second. Set beside
`benchmarks/twilio_load.py` (the whole gateway) and `benchmarks/voice_loop.py` (the voice
loop alone), it tells how much of a call's cost is the transport and how much is ours.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import subprocess
import sys
import time

import aiohttp

CLK_TCK = os.sysconf("SC_CLK_TCK")
FRAME_S = 0.02
PORT = 8766


async def serve(port: int) -> None:
    """The bare server: parse what arrives, send 20 ms of audio (and a mark) per tick."""
    import orjson
    from aiohttp import WSMsgType, web

    streams: set[web.WebSocketResponse] = set()
    payload = base64.b64encode(b"\xff" * 160).decode()

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        due, n = loop.time(), 0
        while True:
            due += FRAME_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            n += 1
            for ws in list(streams):
                try:
                    await ws.send_str(
                        orjson.dumps(
                            {"event": "media", "streamSid": "MZ1", "media": {"payload": payload}}
                        ).decode()
                    )
                    if n % 5 == 0:
                        await ws.send_str(
                            orjson.dumps(
                                {"event": "mark", "streamSid": "MZ1", "mark": {"name": f"u@{n}"}}
                            ).decode()
                        )
                except ConnectionError:
                    streams.discard(ws)

    async def stream(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        streams.add(ws)
        try:
            while True:
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT:
                    break
                m = orjson.loads(msg.data)
                if m.get("event") == "media":
                    base64.b64decode(m["media"]["payload"])
        finally:
            streams.discard(ws)
        return ws

    app = web.Application()
    app.router.add_get("/stream", stream)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    ticker = asyncio.create_task(tick())
    try:
        await asyncio.Event().wait()
    finally:
        ticker.cancel()


def cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def load(n: int, seconds: float, pid: int, port: int) -> tuple[float, float]:
    """N streams at real-time pace; (server share of its core, CPU-ms per call-second)."""
    payload = base64.b64encode(b"\x7f" * 160).decode()
    message = json.dumps(
        {
            "event": "media",
            "streamSid": "MZ1",
            "media": {"track": "inbound", "chunk": "1", "timestamp": "20", "payload": payload},
        }
    )
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        sockets = [await http.ws_connect(f"http://127.0.0.1:{port}/stream") for _ in range(n)]

        async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for _ in ws:
                pass

        readers = [asyncio.create_task(drain(ws)) for ws in sockets]
        await asyncio.sleep(1.0)
        loop = asyncio.get_running_loop()
        due, c0, t0 = loop.time(), cpu_s(pid), time.monotonic()
        while time.monotonic() - t0 < seconds:
            due += FRAME_S
            await asyncio.sleep(max(0.0, due - loop.time()))
            for ws in sockets:
                await ws.send_str(message)
        used, wall = cpu_s(pid) - c0, time.monotonic() - t0
        for ws in sockets:
            await ws.close()
        await asyncio.gather(*readers, return_exceptions=True)
    return used / wall, 1000 * used / (n * wall)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ns", default="100,200,400")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        import uvloop

        uvloop.run(serve(PORT))
        return
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, __file__, "--serve"])
    try:
        os.sched_setaffinity(0, {1})
        time.sleep(2.0)
        print(f"{'N':>5} {'srv CPU':>8} {'CPU-ms/call-s':>14}")
        for n in (int(x) for x in args.ns.split(",")):
            share, per_call = asyncio.run(load(n, args.seconds, server.pid, PORT))
            print(f"{n:>5} {100 * share:>7.0f}% {per_call:>14.2f}", flush=True)
    finally:
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
