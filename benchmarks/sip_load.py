"""N concurrent SIP calls placed by sipp, with RTP audio, against `atoms-gateway serve
--sip-port` pinned to one core.

    .venv/bin/python benchmarks/sip_load.py [--ns 25,50,100,200] [--hold 20] [--rate R]
        [--stt deepgram] [--silent] [--cold] [--profile]

For each N a fresh server runs under `taskset -c 0` with the demo agent (espeak-ng
greeting, pocketsphinx with the demo's phrase grammar, VAD and barge-in on every call),
minus its hang-up and transfer (`setup` below: the grammar forces sipp's pcap speech onto
some phrase, and a BYE or REFER from the gateway would break sipp's scripted call); sipp
runs under `taskset -c 1`. Every call: INVITE/200/ACK, sipp plays 7 s of A-law speech from its
sample pcap (which talks over the greeting: barge-in, STT, a reply), the call is held for
`--hold` seconds, then BYE. Calls are placed at `--rate` per second (default N/10, so all
N overlap for the last part of the ramp and after it). Before the measured round, N short
calls warm the server up (engines pool per-call state such as STT decoders, whose
creation blocks the event loop); `--cold` measures a fresh server instead.

Printed per N:
- calls answered by the gateway / placed, sipp's failed calls;
- CPU-ms per call-second: server utime+stime (+ reaped children: the espeak-ng
  processes) from /proc/PID/stat over the round, divided by N x hold;
- outbound frames: 20 ms RTP frames the gateway sent; "late": 20 ms slots lost to stalls
  inside a talkspurt (a frame more than one frame behind its schedule: the event loop
  was blocked, or speech synthesis fell behind), and the worst stall (from the gateway's
  per-call log line);
- the worst lateness of the gateway's shared 20 ms media tick (inbound side) during the
  measured round.
Then the largest N with no late outbound frame.

`--profile` samples the server with py-spy (`.venv/bin/pip install py-spy`) for `--hold`
seconds of each round, prints where its samples land and keeps the raw stacks in the
temp directory.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "sip_examples" / "sipp" / "uac_load.xml"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ENDED = re.compile(r"ended \((?P<reason>[^)]*)\): (?P<frames>\d+) frames sent, "
                   r"(?P<late>\d+) late \(max (?P<max>\d+) ms\)")


async def setup(session: Any) -> None:
    """The demo agent without agent.end_call / agent.transfer_call (used via --app)."""
    from gateway.demo import DemoAgent

    class LoadAgent(DemoAgent):
        async def send_event(self, event: Any) -> None:
            if event.type not in ("agent.end_call", "agent.transfer_call"):
                await super().send_event(event)

    session.add_node(LoadAgent())
    await session.start()
    await session.wait_until_complete()


def free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
                t.bind(("127.0.0.1", port))
        except OSError:
            continue
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime + cutime + cstime) / CLK_TCK


@dataclass
class Round:
    n: int
    answered: int
    failed: int
    cpu_ms_per_call_s: float
    frames: int
    late: int
    max_late_ms: int
    tick_lag_ms: float


def start_stt_server() -> tuple[subprocess.Popen[str], str]:
    """The local Deepgram-protocol server (tests/kit/servers/deepgram_server.py) on sipp's core, answering
    every utterance with a question the demo agent replies to: recognition cost stays off
    the gateway's core, as with a cloud recogniser."""
    port = free_port()
    proc = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "tests.kit.servers.deepgram_server", "--port", str(port),
         "--fixed-transcript", "what time is it"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if "listening" not in line:
        raise SystemExit(f"deepgram test server did not start: {line!r}")
    return proc, f"ws://127.0.0.1:{port}/v1/listen"


def run_round(n: int, hold: float, rate: float, workdir: Path, warm: bool,
              silent: bool, stt_url: str | None = None, profile_to: str | None = None) -> Round:
    sip_port = free_port()
    scenario = SCENARIO
    if silent:  # the same call without the caller's pcap speech
        scenario = workdir / "uac_load_silent.xml"
        scenario.write_text("\n".join(line for line in SCENARIO.read_text().splitlines()
                                      if "play_pcap_audio" not in line))
    log_path = workdir / f"gateway-{n}.log"
    gateway_cmd = [
        "taskset", "-c", "0", sys.executable, "-m", "gateway.cli", "--log-level", "INFO",
        "serve", f"{Path(__file__).resolve()}:setup", "--host", "127.0.0.1", "--port", "0", "--sip-port", str(sip_port),
        "--rtp-ports", "40000-44000", "--max-calls", str(n + 50),
    ]
    env = dict(os.environ)
    if stt_url:
        sys.path.insert(0, str(ROOT))
        from tests.kit.servers.deepgram_server import API_KEY

        env.update(ATOMS_STT="deepgram", ATOMS_STT_URL=stt_url, DEEPGRAM_API_KEY=API_KEY)
    with open(log_path, "w") as log:
        server = subprocess.Popen(gateway_cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env=env)
    try:
        deadline = time.monotonic() + 60
        while "SIP listening" not in log_path.read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.2)
        def place_calls(hold_s: float) -> subprocess.CompletedProcess[str]:
            sipp = [
                "taskset", "-c", "1", "sipp", "-sf", str(scenario), "-s", "agent",
                "-i", "127.0.0.1", "-p", str(free_port()), "-ci", "127.0.0.1",
                "-cp", str(free_port()), "-mi", "127.0.0.1", "-mp", "38000",
                "-r", f"{rate:g}", "-l", str(n), "-m", str(n), "-d", str(int(hold_s * 1000)),
                "-nostdin", "-timeout", f"{int(hold_s + n / rate + 60)}s",
                f"127.0.0.1:{sip_port}",
            ]
            result = subprocess.run(sipp, cwd=workdir, capture_output=True, text=True)
            time.sleep(1.0)  # the last BYEs are processed
            return result

        if warm:  # N short calls first: per-call engine state (STT decoders) is pooled
            place_calls(0.5)
        offset = len(log_path.read_text())
        spy = None
        if profile_to:  # samples the middle of the round, when all calls overlap
            spy = subprocess.Popen(
                [str(ROOT / ".venv/bin/py-spy"), "record", "--pid", str(server.pid),
                 "--rate", "100", "--duration", str(int(hold)), "--format", "raw",
                 "--output", profile_to],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        cpu0 = cpu_seconds(server.pid)
        out = place_calls(hold)
        cpu1 = cpu_seconds(server.pid)
        if spy is not None:
            spy.wait(30)
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    full = log_path.read_text()
    text = full[offset:]
    ends = [m for m in ENDED.finditer(text)]
    failed = re.search(r"Failed call\s*\|\s*\d+\s*\|\s*(\d+)", out.stdout)
    lags = [float(x) for x in re.findall(r"tick lag max ([\d.]+) ms while busy", text)]
    return Round(
        n=n,
        answered=text.count("call started"),
        failed=int(failed.group(1)) if failed else -1,
        cpu_ms_per_call_s=(cpu1 - cpu0) * 1000 / (n * hold),
        frames=sum(int(m["frames"]) for m in ends),
        late=sum(int(m["late"]) for m in ends),
        max_late_ms=max((int(m["max"]) for m in ends), default=0),
        tick_lag_ms=max(lags, default=float("nan")),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ns", default="25,50,100,200")
    parser.add_argument("--hold", type=float, default=20.0, help="seconds each call lasts")
    parser.add_argument("--rate", type=float, default=None, help="calls per second")
    parser.add_argument("--silent", action="store_true",
                        help="callers send no audio (greeting only: transport + playout cost)")
    parser.add_argument("--cold", action="store_true",
                        help="measure the first N calls of a fresh server (no warm-up round)")
    parser.add_argument("--stt", choices=["pocketsphinx", "deepgram"], default="pocketsphinx",
                        help="deepgram: caller speech goes to a local server speaking "
                             "Deepgram's protocol on core 1 (a cloud-recogniser deployment)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the server with py-spy during each round and print "
                             "where its time goes")
    args = parser.parse_args()
    for tool in ("sipp", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/system-deps.sh)")
    if args.profile and not (ROOT / ".venv/bin/py-spy").exists():
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs 2 cores: the gateway on core 0, sipp on core 1")
    rounds = []
    stt_proc, stt_url = start_stt_server() if args.stt == "deepgram" else (None, None)
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.ns.split(",")):
            rate = args.rate or max(5.0, n / 10)
            profile_to = str(Path(tmp) / f"profile-{n}.txt") if args.profile else None
            r = run_round(n, args.hold, rate, Path(tmp), not args.cold, args.silent, stt_url,
                          profile_to)
            rounds.append(r)
            sys.stdout.write(
                f"N={r.n:4d}  answered {r.answered}/{r.n}  sipp failed {r.failed}  "
                f"CPU {r.cpu_ms_per_call_s:6.2f} ms per call-second  "
                f"outbound frames {r.frames} late {r.late} (max {r.max_late_ms} ms)  "
                f"media tick lag max {r.tick_lag_ms:.0f} ms\n")
            sys.stdout.flush()
            if profile_to and Path(profile_to).exists():
                sys.path.insert(0, str(ROOT))
                from benchmarks.twilio_load import print_profile

                print_profile(profile_to, top=40)
                kept = Path(tempfile.gettempdir()) / f"sip_load-profile-{n}.txt"
                shutil.copy(profile_to, kept)
                sys.stdout.write(f"py-spy raw stacks kept in {kept}\n")
    if stt_proc is not None:
        stt_proc.terminate()
        stt_proc.wait(10)
    clean = [r.n for r in rounds if r.late == 0 and r.answered == r.n]
    sys.stdout.write(f"largest N with no late outbound frame: {max(clean) if clean else 0}\n")


if __name__ == "__main__":
    main()
