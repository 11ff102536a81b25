"""N concurrent simulated Twilio calls against `atoms-gateway serve` pinned to one core.

    .venv/bin/python benchmarks/twilio_load.py [--ns 1,25,50,100,200] [--profile N]

For each N a fresh server runs under `taskset -c 0` (the demo agent, espeak-ng replies,
pocketsphinx with the demo's phrase grammar); this load generator pins itself to core 1.
Every call is a Twilio Media Streams client at real-time pace (one 20 ms mu-law frame every
20 ms from one drift-free ticker shared by all calls): silence, "what time is it" over the
greeting (barge-in), silence while the reply plays, "what time is it" again, silence, stop.
Marks are echoed as they arrive. Like a phone line, every caller has a noise floor (about
-65 dBFS, never digital silence) and echoes the agent's audio back 10 dB down 40 ms (two
ticks) after it arrived, at a delay that holds for the whole talkspurt as a line's does, so the barge-in detector works as hard as on a real call. Call starts are spread over up to 5 s (50 ms apart), so
callers talk at different moments (all of them talking in the same second is a burst far
above any steady state).

Printed per N:
- CPU-ms per call-second: server utime+stime (+ reaped children) from /proc/PID/stat over
  the round, divided by the summed duration of the calls;
- response lag p50/p99: last frame of an utterance sent -> first reply frame received
  (includes the end-of-turn silence the turn detector waits for, STT and TTS);
- RSS per call: (peak RSS during the round - RSS when idle) / N;
- gaps: agent-audio gaps > 60 ms inside a reply (the server falling behind real time);
- no reply / no clear: utterances with no reply frame, calls where talking over the greeting
  brought no `clear` (barge-in missed);
- gen late / gen CPU: the load generator's worst tick lateness and its CPU share (if high,
  the figures are unreliable);
- srv CPU: the server's CPU time over the round's wall time (100% = its core is saturated;
  well below 100% with growing lag means the core is shared with something else);
- setup: extra warm-up time per call. Before each measured round N calls run the script's
  first utterance at the same moments and hang up, so the server has built (and pooled) its
  per-caller resources (recognisers): the round measures the steady state, and "setup"
  shows how much longer than real time the warm-up took, per call.
Then the largest N whose p99 lag is within 50 ms of the N=1 figure.

`--stt deepgram` makes the gateway stream caller speech to tests/kit/servers/deepgram_server.py (a local
server speaking Deepgram's live protocol, answering the script's question) on core 1, as a
deployment with a cloud recogniser does; the default runs pocketsphinx on the gateway's core.

`--server-env NAME=VALUE` (repeatable) sets a variable for the server, e.g.
`ATOMS_METRICS=0` to compare a round without the Prometheus metrics.

`--profile N` also runs one round of N calls while `py-spy` samples the server, and prints
where its time goes (needs `.venv/bin/pip install py-spy`).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.kit.speech import speech, trim_silence  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME_S = 0.020
QUESTION = "what time is it"
ECHO_FRAMES = 2  # the line echoes the agent's audio two ticks (40 ms) later...
ECHO_GAIN = 10 ** (-10 / 20)  # ...10 dB down, as the phone line does
SHOW_SERVER_LOG = False  # --server-log
SERVER_ENV: dict[str, str] = {}  # --server-env
STAGGER_S = 5.0  # call starts spread over this long, so callers do not all talk at once
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# ------------------------------------------------------------------------------ script


@dataclass
class Script:
    frames: list[bytes]  # 8 kHz int16 PCM (little-endian bytes), one per 20 ms
    utterance_ends: list[int]  # index of the last frame of each utterance


def line_noise(samples: int, seed: int = 1) -> np.ndarray:
    """A phone line's noise floor, about -65 dBFS: callers are never digitally silent."""
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(0.0, 32768 * 10 ** (-65 / 20), samples)).astype(np.int16)


def make_scripts() -> tuple[Script, Script]:
    """The measured call, and the warm-up call (the question once, at the same moment)."""
    question = trim_silence(speech(QUESTION, rate=8000))
    pad = (-len(question)) % 160
    question = np.concatenate([question, np.zeros(pad, dtype=np.int16)])
    pcm: list[np.ndarray] = []
    ends: list[int] = []

    def add_silence(seconds: float) -> None:
        pcm.extend(np.zeros(160, dtype=np.int16) for _ in range(round(seconds / FRAME_S)))

    def add_question() -> None:
        pcm.extend(question[i : i + 160] for i in range(0, len(question), 160))
        ends.append(len(pcm) - 1)

    add_silence(1.5)  # part of the greeting
    add_question()  # talks over the greeting
    add_silence(4.0)  # the reply plays
    add_question()
    add_silence(4.0)
    whole = np.concatenate(pcm)
    whole = (whole.astype(np.int32) + line_noise(len(whole))).clip(-32768, 32767)
    frames = [whole[i : i + 160].astype("<i2").tobytes() for i in range(0, len(whole), 160)]
    warm = frames[: ends[0] + 1] + frames[-50:]
    return Script(frames, ends), Script(warm, ends[:1])


# ------------------------------------------------------------------------------ one call


@dataclass
class CallStats:
    started: float = 0.0
    ended: float = 0.0
    lags: list[float] = field(default_factory=list)
    gaps: int = 0
    clears: int = 0
    frames_in: int = 0
    error: str = ""


class Call:
    def __init__(self, http: aiohttp.ClientSession, url: str, script: Script) -> None:
        self.http, self.url, self.script = http, url, script
        self.sid = "MZ" + uuid.uuid4().hex
        self.call_sid = "CA" + uuid.uuid4().hex
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.stats = CallStats()
        self.index = 0  # next frame to send
        self.waiting_since: float | None = None  # last utterance frame sent, no reply yet
        self.last_in = 0.0
        self.in_reply = False
        self.done = False
        self._prefix = '{"event":"media","sequenceNumber":"'
        self._seq = 0
        self._recv: asyncio.Task | None = None
        self.echo: dict[int, bytes] = {}  # tick -> agent audio that comes back then
        self._echo_next = 0  # tick of the next agent frame's echo within a talkspurt

    async def open(self) -> None:
        try:
            await self._open()
        except Exception as exc:  # recorded; the round goes on
            self.stats.error = repr(exc)
            self.done = True

    async def _open(self) -> None:
        self.ws = await self.http.ws_connect(self.url, max_msg_size=0)
        await self.ws.send_str(json.dumps({"event": "connected", "protocol": "Call",
                                           "version": "1.0.0"}))
        await self.ws.send_str(json.dumps({
            "event": "start", "sequenceNumber": "1", "streamSid": self.sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": self.sid,
                      "callSid": self.call_sid, "tracks": ["inbound"],
                      "customParameters": {},
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000,
                                      "channels": 1}}}))
        self.stats.started = time.monotonic()
        self._recv = asyncio.create_task(self._receive())

    async def tick(self) -> None:
        """Send the next frame (called every 20 ms by the shared ticker)."""
        if self.done or self.ws is None or self.ws.closed:
            return
        i = self.index
        if i >= len(self.script.frames):
            await self.ws.send_str(json.dumps({"event": "stop", "streamSid": self.sid,
                                               "stop": {"callSid": self.call_sid}}))
            self.done = True
            return
        self._seq += 1
        pcm = self.script.frames[i]
        echo = self.echo.pop(i, None)
        if echo is not None:  # the agent's audio comes back 10 dB down
            pcm = audioop.add(pcm, audioop.mul(echo, 2, ECHO_GAIN), 2)
        payload = base64.b64encode(audioop.lin2ulaw(pcm, 2)).decode()
        await self.ws.send_str(
            f'{{"event":"media","sequenceNumber":"{self._seq + 1}","streamSid":"{self.sid}",'
            f'"media":{{"track":"inbound","chunk":"{i + 1}","timestamp":"{20 * i}",'
            f'"payload":"{payload}"}}}}')
        if i in self.script.utterance_ends:
            self.waiting_since = time.monotonic()
        self.index += 1

    async def _receive(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                now = time.monotonic()
                data = msg.data
                if data.startswith('{"event":"media"'):
                    self.stats.frames_in += 1
                    start = data.find('"payload":"') + 11
                    # one frame per tick from the first of a talkspurt on: a fixed delay
                    tick = max(self.index + ECHO_FRAMES, self._echo_next)
                    if tick > self.index + ECHO_FRAMES + 5:  # far behind: a new talkspurt
                        tick = self.index + ECHO_FRAMES
                    self._echo_next = tick + 1
                    self.echo[tick] = audioop.ulaw2lin(
                        base64.b64decode(data[start : data.index('"', start)]), 2)
                    # the reply is the first frame after a pause (not the tail of audio
                    # that was still playing when the utterance ended)
                    if self.waiting_since is not None and now - self.last_in > 0.100:
                        self.stats.lags.append(now - self.waiting_since)
                        self.waiting_since = None
                        self.in_reply = True
                    elif self.in_reply and now - self.last_in > 0.060:
                        self.stats.gaps += 1
                    self.last_in = now
                    continue
                event = json.loads(data)
                if event.get("event") == "mark":
                    await self.ws.send_str(json.dumps({"event": "mark", "streamSid": self.sid,
                                                       "mark": event["mark"]}))
                elif event.get("event") == "clear":
                    self.stats.clears += 1
                    self.echo.clear()
                    self._echo_next = 0
                    self.in_reply = False
        except Exception as exc:  # recorded; the round goes on
            self.stats.error = repr(exc)
        finally:
            self.stats.ended = time.monotonic()
            self.done = True


# ------------------------------------------------------------------------------ server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


async def start_stt_server() -> tuple[asyncio.subprocess.Process, str]:
    """The local Deepgram-protocol server (tests/kit/servers/deepgram_server.py) on the load generator's
    core, answering every utterance with the script's question: recognition cost stays off
    the gateway's core, as with a cloud recogniser."""
    port = free_port()
    cmd = [str(ROOT / ".venv/bin/python"), "-m", "tests.kit.servers.deepgram_server", "--port", str(port),
           "--fixed-transcript", QUESTION]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.DEVNULL)
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 30)
    if b"listening" not in line:
        raise SystemExit(f"deepgram test server did not start: {line!r}")
    return proc, f"ws://127.0.0.1:{port}/v1/listen"


async def start_server(port: int, stt_url: str | None = None) -> asyncio.subprocess.Process:
    cmd = [str(ROOT / ".venv/bin/python"), "-m", "gateway.cli", "--log-level", "WARNING", "serve", "--host", "127.0.0.1",
            "--port", str(port), "--max-calls", "5000"]
    if shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    env = {**os.environ, **SERVER_ENV}
    if stt_url:
        from tests.kit.servers.deepgram_server import API_KEY

        env.update(ATOMS_STT="deepgram", ATOMS_STT_URL=stt_url, DEEPGRAM_API_KEY=API_KEY)
    proc = await asyncio.create_subprocess_exec(*cmd, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.PIPE)
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            try:
                async with http.get(f"http://127.0.0.1:{port}/ready") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientConnectionError:
                pass
            if proc.returncode is not None:
                err = await proc.stderr.read() if proc.stderr else b""
                raise SystemExit(f"server exited: {err.decode()[-2000:]}")
            await asyncio.sleep(0.1)
    raise SystemExit("server not ready in 30 s")


async def stop_server(proc: asyncio.subprocess.Process) -> str:
    proc.terminate()
    try:
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    except TimeoutError:
        proc.kill()
        _, err = await proc.communicate()
    return (err or b"").decode(errors="replace")


# ------------------------------------------------------------------------------ a round


@dataclass
class Round:
    n: int
    cpu_ms_per_call_s: float
    lag_p50_ms: float
    lag_p99_ms: float
    rss_per_call_mb: float
    gaps: int
    errors: int
    missing_replies: int
    no_clear: int
    gen_late_ms: float
    gen_cpu: float
    setup_ms: float
    server_cpu: float


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


@dataclass
class Drive:
    calls: list[Call]
    rss_peak: int
    worst_late: float
    wall: float


async def drive(http: aiohttp.ClientSession, url: str, script: Script, n: int, pid: int,
                stagger: float) -> Drive:
    """Run n calls of `script`, started evenly over `stagger` seconds, from one ticker."""
    calls = [Call(http, url, script) for _ in range(n)]
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    active: list[Call] = []
    pending = list(calls)
    starts = [t0 + stagger * i / max(n, 1) for i in range(n)]
    openings: set[asyncio.Task] = set()
    rss_peak = proc_rss(pid)
    worst_late = 0.0
    k = 0
    while pending or any(not c.done for c in active) or openings:
        target = t0 + k * FRAME_S
        delay = target - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        worst_late = max(worst_late, loop.time() - target)
        now = loop.time()
        while pending and starts[n - len(pending)] <= now:
            call = pending.pop(0)
            task = asyncio.create_task(call.open())
            openings.add(task)
            task.add_done_callback(openings.discard)
            task.add_done_callback(lambda _t, c=call: active.append(c))
        for call in active:
            await call.tick()
        if k % 25 == 0:
            rss_peak = max(rss_peak, proc_rss(pid))
        k += 1
    for call in calls:
        if call._recv is not None:
            await asyncio.wait({call._recv}, timeout=5)
    return Drive(calls, rss_peak, worst_late, loop.time() - t0)


async def run_round(n: int, script: Script, warm: Script,
                    profile_to: str | None = None, stt_url: str | None = None) -> Round:
    port = free_port()
    proc = await start_server(port, stt_url)
    url = f"ws://127.0.0.1:{port}/twilio/stream"
    rss_idle = proc_rss(proc.pid)
    stagger = min(STAGGER_S, n * 0.05)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:
        # warm-up: the same number of calls speaking at the same moments, so the server has
        # built its per-caller resources (recognisers are pooled) before the measured round
        t_warm = time.monotonic()
        await drive(http, url, warm, n, proc.pid, stagger)
        setup_s = (time.monotonic() - t_warm - len(warm.frames) * FRAME_S - stagger) / n
        await asyncio.sleep(1.0)  # let the warm-up calls end
        spy = None
        if profile_to:
            seconds = len(script.frames) * FRAME_S + 2
            spy = await asyncio.create_subprocess_exec(
                str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(proc.pid), "--rate", "100",
                "--duration", str(int(seconds)), "--format", "raw", "--output", profile_to, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL)
        cpu0, gen0 = proc_cpu_s(proc.pid), time.process_time()
        d = await drive(http, url, script, n, proc.pid, stagger)
        cpu1, gen1 = proc_cpu_s(proc.pid), time.process_time()
        if spy is not None:
            await spy.wait()
    err = await stop_server(proc)
    if err.strip() and SHOW_SERVER_LOG:
        print(f"server log (N={n}):\n{err[-3000:]}")
    calls = d.calls
    call_s = sum(max(0.0, c.stats.ended - c.stats.started) for c in calls)
    lags = [lag for c in calls for lag in c.stats.lags]
    expected = n * len(script.utterance_ends)
    return Round(
        n=n,
        cpu_ms_per_call_s=1000 * (cpu1 - cpu0) / max(call_s, 1e-9),
        lag_p50_ms=1000 * pct(lags, 0.50),
        lag_p99_ms=1000 * pct(lags, 0.99),
        rss_per_call_mb=(d.rss_peak - rss_idle) / n / 2**20,
        gaps=sum(c.stats.gaps for c in calls),
        errors=sum(1 for c in calls if c.stats.error),
        missing_replies=expected - len(lags),
        no_clear=sum(1 for c in calls if not c.stats.clears),
        gen_late_ms=1000 * d.worst_late,
        gen_cpu=(gen1 - gen0) / d.wall,
        setup_ms=1000 * max(setup_s, 0.0),
        server_cpu=(cpu1 - cpu0) / d.wall,
    )


def print_profile(path: str, top: int = 20) -> None:
    """py-spy raw (collapsed) stacks: where the server's samples land, by own and total."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in Path(path).read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        samples += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + n
    print(f"{samples} samples")
    for title, table in (("own", own), ("total (incl. callees)", total)):
        print(f"-- top by {title}")
        for frame, n in sorted(table.items(), key=lambda kv: -kv[1])[:top]:
            print(f"{100 * n / max(samples, 1):5.1f}%  {frame[:110]}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ns", default="1,25,50,100,200")
    parser.add_argument("--profile", type=int, default=None,
                        help="also profile one round of this many calls")
    parser.add_argument("--stt", choices=["pocketsphinx", "deepgram"], default="pocketsphinx",
                        help="deepgram: the gateway streams caller speech to a local server "
                             "speaking Deepgram's protocol (on core 1), as with a cloud "
                             "recogniser; pocketsphinx: recognition on the gateway's core")
    parser.add_argument("--server-log", action="store_true",
                        help="print the server's warnings after each round")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable for the server, e.g. ATOMS_METRICS=0 (repeatable)")
    args = parser.parse_args()
    global SHOW_SERVER_LOG
    SHOW_SERVER_LOG = args.server_log
    for item in args.server_env:
        name, _, value = item.partition("=")
        SERVER_ENV[name] = value
    try:
        os.sched_setaffinity(0, {1})
    except (OSError, AttributeError):
        print("note: could not pin the load generator to core 1")
    script, warm = make_scripts()
    ns = [int(x) for x in args.ns.split(",")]
    print(f"script: {len(script.frames) * FRAME_S:.1f} s per call, "
          f"{len(script.utterance_ends)} utterances; server on core 0, load on core 1")
    header = (f"{'N':>5} {'CPU-ms/call-s':>14} {'lag p50':>8} {'lag p99':>8} {'RSS/call':>9} "
              f"{'gaps':>5} {'errors':>6} {'no reply':>8} {'no clear':>8} {'gen late':>8} {'gen CPU':>7} {'setup':>7} {'srv CPU':>7}")
    print(header)
    rounds: list[Round] = []
    stt_proc, stt_url = await start_stt_server() if args.stt == "deepgram" else (None, None)
    try:
        for n in ns:
            r = await run_round(n, script, warm, stt_url=stt_url)
            rounds.append(r)
            print(f"{r.n:>5} {r.cpu_ms_per_call_s:>14.1f} {r.lag_p50_ms:>6.0f}ms {r.lag_p99_ms:>6.0f}ms"
                  f" {r.rss_per_call_mb:>7.2f}MB {r.gaps:>5} {r.errors:>6} {r.missing_replies:>8} {r.no_clear:>8}"
                  f" {r.gen_late_ms:>6.0f}ms {100 * r.gen_cpu:>6.0f}% {r.setup_ms:>5.0f}ms {100 * r.server_cpu:>6.0f}%",
                  flush=True)
        base = next((r for r in rounds if r.n == 1), rounds[0])
        fine = [r.n for r in rounds if r.lag_p99_ms <= base.lag_p99_ms + 50
                and not r.errors and not r.missing_replies]
        print(f"largest N with p99 lag within 50 ms of N={base.n} ({base.lag_p99_ms:.0f} ms): "
              f"{max(fine) if fine else 'none'}")
        if args.profile:
            if not (ROOT / ".venv/bin/py-spy").exists():
                raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
            with tempfile.TemporaryDirectory() as tmp:
                path = f"{tmp}/server.txt"
                r = await run_round(args.profile, script, warm, profile_to=path, stt_url=stt_url)
                print(f"\nprofile of the server (py-spy, 100 Hz) during the round of "
                      f"N={args.profile} (p99 {r.lag_p99_ms:.0f} ms while sampled):")
                print_profile(path)
                kept = Path(tempfile.gettempdir()) / f"twilio_load-profile-{args.profile}.txt"
                shutil.copy(path, kept)
                print(f"py-spy raw stacks kept in {kept}")
    finally:
        if stt_proc is not None:
            stt_proc.terminate()
            await stt_proc.wait()


if __name__ == "__main__":
    asyncio.run(main())
