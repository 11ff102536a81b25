"""What the remote-agent hop costs: per-event round trip and gateway CPU per call.

    .venv/bin/python benchmarks/remote_agent.py [--events 5000] [--calls 10] [--rounds 2]

1. Round trip per event (loopback). An echo agent (one node: `system.dtmf` in ->
   `agent.speak` out) runs (a) in-process as a local `AgentSession`, (b) on an agent
   server, our `AtomsApp` `/ws` in its own process, reached through `RemoteSession` as the
   gateway does. One event at a time: time from `deliver()` until the answer reaches the
   output function; p50/p99 in microseconds, the added cost (remote - local), and the CPU
   this (the gateway's) process spends per round trip.
2. Gateway CPU per call-second. `atoms-gateway serve` (pinned to core 0) answers N
   concurrent Twilio Media Streams calls (real-time 20 ms mu-law frames; talk over the
   greeting with "what time is it", hear the reply, hang up) with the demo agent either
   local, or on an agent server (`atoms-gateway serve` in another process, core 1) through
   `--agent-url`. CPU = the gateway process's utime+stime from /proc over the round (its
   espeak-ng children are reported apart), divided by the summed call durations. Rounds
   alternate local/remote.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.events import (  # noqa: E402
    SDKAgentSpeakEvent,
    SDKEvent,
    SDKSystemDtmfEvent,
    SDKSystemInitEvent,
)
from agent.nodes import Node  # noqa: E402
from agent.session import AgentSession  # noqa: E402

PY = str(ROOT / ".venv/bin/python")
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------ the echo agent


class Echo(Node):
    """Answers each DTMF digit with `agent.speak`; forwards nothing else."""

    async def process_event(self, event: SDKEvent) -> None:
        if isinstance(event, SDKSystemDtmfEvent):
            await self.send_event(SDKAgentSpeakEvent(text=event.digit))


async def echo_setup(session: AgentSession) -> None:
    session.add_node(Echo("echo"))
    await session.start()
    await session.wait_until_complete()


def serve_echo(port: int) -> None:
    import logging

    from gateway.app import AtomsApp

    logging.basicConfig(level=logging.WARNING)
    AtomsApp(setup_handler=echo_setup).run("127.0.0.1", port)


# ------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pinned(core: int, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *cmd] if shutil.which("taskset") else cmd


@contextlib.asynccontextmanager
async def process(cmd: list[str], port: int) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `cmd` until its port answers /health; terminate it afterwards."""
    import aiohttp

    proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    async with http.get(f"http://127.0.0.1:{port}/health") as resp:
                        if resp.status == 200:
                            break
                if proc.returncode is not None:
                    raise SystemExit(f"{cmd} exited with {proc.returncode}")
                await asyncio.sleep(0.1)
            else:
                raise SystemExit(f"{cmd} did not answer in 30 s")
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def cpu_s(pid: int) -> tuple[float, float]:
    """(own utime+stime, reaped children's) in seconds."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / CLK_TCK, (cutime + cstime) / CLK_TCK


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# ------------------------------------------------------------------------ 1. round trip


async def round_trips(session: object, n: int) -> list[float]:
    """Microseconds from deliver() to the answer, one event at a time."""
    answered = asyncio.Event()

    async def output(event: SDKEvent) -> None:
        if event.type == "agent.speak":
            answered.set()

    session.set_output(output)  # type: ignore[attr-defined]
    out = []
    for i in range(n):
        answered.clear()
        t0 = time.perf_counter_ns()
        await session.deliver(SDKSystemDtmfEvent(digit=str(i % 10)))  # type: ignore[attr-defined]
        await answered.wait()
        out.append((time.perf_counter_ns() - t0) / 1000)
    return out


CPU_US: dict[str, float] = {}  # this process's CPU per round trip (the gateway's side)


async def timed_trips(name: str, session: object, n: int) -> list[float]:
    cpu0 = time.process_time()
    out = await round_trips(session, n)
    CPU_US[name] = 1e6 * (time.process_time() - cpu0) / n
    return out


async def bench_round_trip(n: int) -> dict[str, list[float]]:
    from gateway.remote_agent import RemoteSession

    local = AgentSession(session_id="local")
    setup = asyncio.create_task(echo_setup(local))
    await local.wait_until_started()
    await round_trips(local, 500)
    local_us = await timed_trips("local", local, n)
    await local.close()
    await setup

    port = free_port()
    cmd = pinned(1, [PY, str(Path(__file__).resolve()), "--serve-echo", str(port)])
    async with process(cmd, port):
        remote = RemoteSession(f"ws://127.0.0.1:{port}/ws", SDKSystemInitEvent(),
                               call_id="bench")
        await remote.deliver(SDKSystemInitEvent())
        if not remote.is_started:
            raise SystemExit("the echo agent server did not answer the handshake")
        await round_trips(remote, 500)
        remote_us = await timed_trips("remote", remote, n)
        await remote.close()
    return {"local": local_us, "remote": remote_us}


# ------------------------------------------------------------------------ 2. CPU per call


async def one_call(port: int, question: object, delay: float) -> tuple[float, bool, bool]:
    """(call seconds, barge-in clear seen, reply heard)."""
    from tests.kit.twilio_caller import TwilioCaller

    await asyncio.sleep(delay)
    loop = asyncio.get_running_loop()
    caller = TwilioCaller(f"ws://127.0.0.1:{port}/twilio/stream")
    t0 = loop.time()
    replied = False
    try:
        await caller.connect()
        await caller.wait_audio(1.5, timeout=15)
        done = await caller.say(question)  # type: ignore[arg-type]
        with contextlib.suppress(AssertionError):
            await caller.wait_audio(1.0, after=done, timeout=15)
            replied = True
        await caller.wait_quiet(0.5, timeout=30)
    finally:
        await caller.hangup()
        await caller.close()
    cleared = any(c == "clear" for _, c in caller.controls)
    return loop.time() - t0, cleared, replied


async def cpu_round(mode: str, calls: int, question: object) -> dict[str, float]:
    port = free_port()
    gateway = [PY, "-m", "gateway.cli", "--log-level", "WARNING", "serve", "--host",
               "127.0.0.1", "--port", str(port)]
    async with contextlib.AsyncExitStack() as stack:
        if mode == "remote":
            agent_port = free_port()
            await stack.enter_async_context(process(pinned(1, [
                PY, "-m", "gateway.cli", "--log-level", "WARNING", "serve", "--host",
                "127.0.0.1", "--port", str(agent_port)]), agent_port))
            gateway += ["--agent-url", f"ws://127.0.0.1:{agent_port}/ws"]
        proc = await stack.enter_async_context(process(pinned(0, gateway), port))
        own0, kids0 = cpu_s(proc.pid)
        results = await asyncio.gather(*(one_call(port, question, 0.1 * i)
                                         for i in range(calls)))
        own1, kids1 = cpu_s(proc.pid)
    call_s = sum(r[0] for r in results)
    return {"own_ms": 1000 * (own1 - own0) / call_s, "kids_ms": 1000 * (kids1 - kids0) / call_s,
            "call_s": call_s, "cleared": sum(r[1] for r in results),
            "replied": sum(r[2] for r in results), "calls": calls}


# ------------------------------------------------------------------------ main


async def main(args: argparse.Namespace) -> None:
    trips = await bench_round_trip(args.events)
    print(f"round trip per event, {args.events} events one at a time (microseconds):")
    print(f"{'':>8} {'p50':>8} {'p99':>8} {'mean':>8} {'CPU here':>9}")
    for name, values in trips.items():
        print(f"{name:>8} {pct(values, 0.5):8.0f} {pct(values, 0.99):8.0f} "
              f"{statistics.fmean(values):8.0f} {CPU_US[name]:9.0f}")
    added50 = pct(trips["remote"], 0.5) - pct(trips["local"], 0.5)
    added99 = pct(trips["remote"], 0.99) - pct(trips["local"], 0.99)
    print(f"   added  {added50:8.0f} {added99:8.0f}   (goal: under 1000 us)")

    from tests.kit.speech import speech, trim_silence
    from tests.kit.twilio_caller import RATE

    question = trim_silence(speech("what time is it", rate=RATE))
    rows: dict[str, list[dict[str, float]]] = {"local": [], "remote": []}
    for _ in range(args.rounds):
        for mode in ("local", "remote"):
            rows[mode].append(await cpu_round(mode, args.calls, question))
    print(f"\ngateway CPU per call-second, {args.calls} concurrent Twilio calls per round:")
    print(f"{'':>8} {'CPU-ms/call-s':>14} {'espeak kids':>12} {'call-s':>8} "
          f"{'clear':>6} {'reply':>6}")
    for mode, rounds in rows.items():
        for r in rounds:
            print(f"{mode:>8} {r['own_ms']:14.2f} {r['kids_ms']:12.2f} {r['call_s']:8.1f} "
                  f"{r['cleared']:>4.0f}/{r['calls']:.0f} {r['replied']:>4.0f}/{r['calls']:.0f}")
    local = statistics.fmean(r["own_ms"] for r in rows["local"])
    remote = statistics.fmean(r["own_ms"] for r in rows["remote"])
    print(f"mean: local {local:.2f}, remote {remote:.2f} CPU-ms per call-second "
          f"({100 * (remote - local) / local:+.1f} %; goal: within 10 %)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--serve-echo":
        serve_echo(int(sys.argv[2]))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    asyncio.run(main(parser.parse_args()))
