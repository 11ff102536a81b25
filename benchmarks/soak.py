"""Soak: N calls one after another against `atoms-gateway serve` on 127.0.0.1, watching the
server for leaks (issue 23).

    .venv/bin/python benchmarks/soak.py [--calls 10000] [--mix twilio=1,ws=1]
                                        [--every 1000] [--lanes 1] [--minutes M]

The server is a child process (tests/kit/serve_process.py) running the offline demo agent
(espeak-ng speaks, pocketsphinx listens with the demo's phrase grammar). The calls, in the
proportions `--mix` gives, round-robin:

- `twilio`: a Twilio Media Streams call (tests/kit/clients, mu-law at 8 kHz, real-time
  microphone, marks echoed): it hears the greeting start, says "what time is it" over it
  (espeak-ng, about 1 s), and waits for the agent's answer (audio that starts after the
  caller stopped), then sends `stop`;
- `ws`: a `/ws` web-client call (PCM16 at 24 kHz): it hears the greeting start, types
  "what time is it" (`{"type": "text"}`), waits for the answer's audio, then hangs up;
- `hangup`: a Twilio call that hangs up as soon as the greeting's first audio arrives.

A call fails when it raises, times out (15 s) or the gateway closes it first. Every
`--every` calls the server is sampled from /proc/<pid>/ once no call is active (`/health`):
resident memory, open file descriptors, threads; and the failures so far. At the end: the
growth per 1,000 calls (least squares over the samples after the first, which holds the
warm-up: pools, caches, lazily imported modules; and over the second half of the samples,
where a growth that levels off has levelled).

`--lanes K` runs K such sequences side by side (calls stay one after another within a
lane), for when one at a time does not fit the time there is; `--minutes M` stops early
(after the current calls) and reports what ran.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.clients import CallClient, TwilioClient, WebClient  # noqa: E402
from tests.kit.serve_process import HOST, Served, start_serve  # noqa: E402

CALL_TIMEOUT_S = 15.0
QUESTION = "what time is it"
KINDS = ("twilio", "ws", "hangup")


def proc_sample(pid: int) -> tuple[int, int, int]:
    """(RSS bytes, open file descriptors, threads) of `pid`, from /proc."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd")), threads


async def question_8k() -> np.ndarray:
    """The caller's question, spoken by the gateway's own espeak-ng engine, at 8 kHz."""
    import soxr

    from media.tts import synthesize_all
    from media.tts.espeak import EspeakTTS

    pcm16k = await synthesize_all(EspeakTTS(), QUESTION)
    out = soxr.resample(pcm16k.astype(np.float32) / 32768, 16000, 8000)
    return (np.clip(out, -1, 1) * 32767).astype(np.int16)


@dataclass
class Tally:
    done: int = 0
    failed: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)

    def fail(self, kind: str, why: str) -> None:
        self.failed += 1
        key = f"{kind}: {why[:120]}"
        self.reasons[key] = self.reasons.get(key, 0) + 1


async def one_call(kind: str, port: int, question: np.ndarray) -> None:
    client: CallClient = WebClient(HOST, port) if kind == "ws" else TwilioClient(HOST, port)
    try:
        await client.connect()
        await client.start()
        if kind != "ws":
            client.start_mic()
        await client.wait_audio(0.02, timeout=CALL_TIMEOUT_S)  # the greeting starts
        if kind == "twilio":
            spoken_at = await asyncio.wait_for(client.say(question), CALL_TIMEOUT_S)
            await client.wait_audio(0.1, after=spoken_at, timeout=CALL_TIMEOUT_S)
        elif kind == "ws":
            asked = client.loop.time()
            await client.send_json({"type": "text", "text": QUESTION})
            await asyncio.wait_for(_answered(client), CALL_TIMEOUT_S)
            await client.wait_audio(0.1, after=asked, timeout=CALL_TIMEOUT_S)
        if client.closed.is_set():
            raise AssertionError(f"closed by the gateway ({client.close_code} "
                                 f"{client.close_reason})")
        await client.hangup_and_wait()
        if client.problems:
            raise AssertionError("; ".join(client.problems[:3]))
    finally:
        await client.close()


async def _answered(client: CallClient) -> None:
    """A web client's typed turn reached the agent (it is told of the request)."""
    assert isinstance(client, WebClient)
    while not any(e.get("type") == "system.llm.request" for e in client.events):
        if client.closed.is_set():
            raise AssertionError("closed before the answer")
        client._control_event.clear()
        await client._control_event.wait()


async def active_calls(http: aiohttp.ClientSession, served: Served) -> int:
    async with http.get(f"{served.url}/health") as resp:
        return int((await resp.json())["active_calls"])


async def settle(http: aiohttp.ClientSession, served: Served, timeout: float = 20.0) -> bool:
    """Until the server lists no call (each ends a moment after its client hung up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await active_calls(http, served) == 0:
            return True
        await asyncio.sleep(0.05)
    return False


def slope(xs: list[float], ys: list[float]) -> float:
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)[0])


def parse_mix(text: str) -> list[str]:
    """`twilio=3,ws=1` -> a round-robin cycle with those weights."""
    cycle: list[str] = []
    for part in text.split(","):
        name, _, weight = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise SystemExit(f"--mix: unknown kind {name!r} (one of {', '.join(KINDS)})")
        cycle += [name] * int(weight or 1)
    if not cycle:
        raise SystemExit("--mix: no calls")
    return cycle


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", type=int, default=10_000)
    ap.add_argument("--mix", default="twilio=1,ws=1",
                    help="call kinds and weights: twilio, ws, hangup (default twilio=1,ws=1)")
    ap.add_argument("--every", type=int, default=1000, help="sample every this many calls")
    ap.add_argument("--lanes", type=int, default=1, help="sequences of calls side by side")
    ap.add_argument("--minutes", type=float, default=0.0, help="stop after this long (0: never)")
    ap.add_argument("--serve-arg", action="append", default=[],
                    help="an extra argument for `atoms-gateway serve` (repeatable)")
    args = ap.parse_args()
    cycle = parse_mix(args.mix)
    question = await question_8k()
    log = Path(tempfile.mkdtemp(prefix="soak-")) / "serve.log"
    served = await start_serve(log, "--log-level", "warning", *args.serve_arg)
    pid = served.proc.pid
    print(f"server pid {pid}, log {log}; {args.calls} calls, mix {args.mix}, "
          f"{args.lanes} lane(s)", flush=True)
    tally = Tally()
    kinds = itertools.cycle(cycle)
    numbers = itertools.count(1)
    stop_at = time.monotonic() + args.minutes * 60 if args.minutes else float("inf")
    samples: list[tuple[int, int, int, int]] = []  # (calls, rss, fds, threads)
    checkpoint = asyncio.Event()  # lanes wait here while the server is sampled
    checkpoint.set()
    t0 = time.monotonic()

    async with aiohttp.ClientSession() as http:
        await settle(http, served)
        rss, fds, threads = proc_sample(pid)
        samples.append((0, rss, fds, threads))
        print(f"{'calls':>7} {'RSS MB':>8} {'fds':>5} {'threads':>7} {'failed':>6} "
              f"{'calls/s':>7}", flush=True)
        print(f"{0:>7} {rss / 1e6:>8.1f} {fds:>5} {threads:>7} {0:>6} {'-':>7}", flush=True)
        started = 0
        in_flight = 0
        idle = asyncio.Condition()

        def none_in_flight() -> bool:
            return in_flight == 0

        async def lane() -> None:
            nonlocal started, in_flight
            while True:
                await checkpoint.wait()
                if started >= args.calls or time.monotonic() > stop_at:
                    return
                started += 1
                in_flight += 1
                n, kind = next(numbers), next(kinds)
                try:
                    await asyncio.wait_for(one_call(kind, served.port, question),
                                           CALL_TIMEOUT_S * 2)
                except Exception as exc:  # counted, and the soak goes on
                    tally.fail(kind, f"{type(exc).__name__}: {exc}")
                tally.done += 1
                tally.by_kind[kind] = tally.by_kind.get(kind, 0) + 1
                async with idle:
                    in_flight -= 1
                    idle.notify_all()
                if n % args.every == 0:
                    checkpoint.clear()
                    async with idle:
                        await idle.wait_for(none_in_flight)
                    await sample(tally.done)
                    checkpoint.set()

        async def sample(done: int) -> None:
            if not await settle(http, served):
                print("  (calls still listed after 20 s)", flush=True)
            rss, fds, threads = proc_sample(pid)
            samples.append((done, rss, fds, threads))
            rate = done / (time.monotonic() - t0)
            print(f"{done:>7} {rss / 1e6:>8.1f} {fds:>5} {threads:>7} {tally.failed:>6} "
                  f"{rate:>7.2f}", flush=True)

        await asyncio.gather(*(lane() for _ in range(args.lanes)))
        if samples[-1][0] != tally.done:
            await sample(tally.done)
    await served.stop()

    wall = time.monotonic() - t0
    print(f"\n{tally.done} calls in {wall / 60:.1f} min ({tally.by_kind}), "
          f"{tally.failed} failed")
    for why, count in sorted(tally.reasons.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {count} x {why}")
    later = samples[1:] if len(samples) > 2 else samples
    xs = [s[0] / 1000 for s in later]
    print(f"growth per 1,000 calls (least squares over {len(later)} samples from call "
          f"{later[0][0]}):")
    print(f"  RSS {slope(xs, [s[1] / 1e6 for s in later]):+.2f} MB, "
          f"fds {slope(xs, [s[2] for s in later]):+.2f}, "
          f"threads {slope(xs, [s[3] for s in later]):+.2f}")
    tail = samples[len(samples) // 2:]  # where a warm-up that levels off has levelled
    if len(tail) >= 2:
        xs = [s[0] / 1000 for s in tail]
        print(f"  over the second half (from call {tail[0][0]}): RSS "
              f"{slope(xs, [s[1] / 1e6 for s in tail]):+.2f} MB, fds "
              f"{slope(xs, [s[2] for s in tail]):+.2f}, threads "
              f"{slope(xs, [s[3] for s in tail]):+.2f}")
    first, last = samples[0], samples[-1]
    print(f"  whole run: RSS {first[1] / 1e6:.1f} -> {last[1] / 1e6:.1f} MB, fds {first[2]} -> "
          f"{last[2]}, threads {first[3]} -> {last[3]}")
    errors = [line for line in served.text().splitlines() if " ERROR " in line]
    print(f"server log: {len(errors)} ERROR lines" + (f", first: {errors[0][:200]}"
                                                       if errors else ""))


if __name__ == "__main__":
    asyncio.run(main())
