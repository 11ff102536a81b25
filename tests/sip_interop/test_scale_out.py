"""Scale-out on loopback (issue 24, item 6), the shape of a multi-machine deployment:
Kamailio's dispatcher (sip_examples/kamailio/kamailio.cfg as shipped) in front of two
`atoms-gateway serve` processes, both driving agents that a third `serve` process hosts
over the Atoms event protocol (`--agent-url`). Callers are sipp and baresip.

1. Calls spread over both gateways.
2. Gateway A is drained with SIGTERM while it has calls in progress and new calls
   arrive: every new call lands on B (A answers 503, Kamailio retries on B), A's calls in
   progress run to the caller's BYE (sipp fails a call on any unexpected message, a BYE
   from the gateway included), A's /ready says 503 meanwhile, and A exits 0 once they
   are over. A is started again (as systemd or Kubernetes would).
3. Gateway B is killed with SIGKILL while calls arrive: every new call lands on A (an
   INVITE B never answers is retried on A after Kamailio's 3 s timer, and B is taken out
   of the set, so the next calls go straight to A).
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import aiohttp
import numpy as np
import pytest

from tests.kit.serve_process import Served, start_serve
from tests.kit.speech import speech
from tests.sip_interop.helpers import (
    LOCALHOST,
    BaresipControl,
    free_port,
    require,
    run_sipp,
    start_kamailio,
    stop_baresip,
    stop_process,
    wait_for,
    write_baresip_config,
    write_wav,
)

pytestmark = pytest.mark.timeout(240)

STARTED = "call started with remote agent"


class Gateway:
    """One `serve --sip-port` process behind Kamailio, restartable on the same ports."""

    def __init__(self, name: str, tmp_path: Path, agent_url: str) -> None:
        self.name, self.tmp_path, self.agent_url = name, tmp_path, agent_url
        self.sip_port = free_port(tcp_too=True)
        low = free_port(even=True)
        self.rtp = f"{low}-{min(low + 40, 65534)}"
        self.runs = 0
        self.served: Served | None = None

    async def start(self) -> None:
        self.runs += 1
        self.served = await start_serve(
            self.tmp_path / f"{self.name}-{self.runs}.log", "--sip-port", str(self.sip_port),
            "--rtp-ports", self.rtp, "--agent-url", self.agent_url, "--drain-timeout", "30")

    def log(self) -> str:
        return "".join(p.read_text(errors="replace")
                       for p in sorted(self.tmp_path.glob(f"{self.name}-*.log")))

    def started(self) -> int:
        """Calls this gateway has taken, over all its runs."""
        return self.log().count(STARTED)

    async def get(self, path: str) -> tuple[int, dict]:
        assert self.served is not None
        async with aiohttp.ClientSession() as http, http.get(self.served.url + path) as r:
            return r.status, await r.json()

    async def active(self) -> int:
        return (await self.get("/health"))[1]["active_calls"]


class Baresip:
    """One baresip process placing calls through Kamailio, one at a time."""

    def __init__(self, tmp_path: Path, kamailio_port: int) -> None:
        self.tmp_path, self.target = tmp_path, f"sip:agent@{LOCALHOST}:{kamailio_port}"
        self.proc: asyncio.subprocess.Process | None = None
        self.ctrl: BaresipControl | None = None

    async def start(self) -> None:
        mic = self.tmp_path / "mic.wav"
        write_wav(mic, np.concatenate([speech("hello there"), np.zeros(16000 * 20, np.int16)]))
        cfg = self.tmp_path / "baresip"
        port = write_baresip_config(cfg, mic)
        self.proc = await asyncio.create_subprocess_exec(
            require("baresip"), "-f", str(cfg), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL)
        self.ctrl = await BaresipControl.connect(port, self.proc)

    def count(self, kind: str) -> int:
        assert self.ctrl is not None
        return sum(1 for e in self.ctrl.events if e.get("type") == kind)

    async def call(self, hold: float = 1.5) -> None:
        """Dial, be answered, hold, hang up."""
        assert self.ctrl is not None
        established, closed = self.count("CALL_ESTABLISHED"), self.count("CALL_CLOSED")
        await self.ctrl.command("dial", self.target)
        await wait_for(lambda: self.count("CALL_ESTABLISHED") > established, 20,
                       "baresip's call to be answered")
        await asyncio.sleep(hold)
        assert self.count("CALL_CLOSED") == closed, "the gateway hung up on baresip"
        await self.ctrl.command("hangup")
        await wait_for(lambda: self.count("CALL_CLOSED") > closed, 10, "baresip to hang up")

    async def stop(self) -> None:
        await stop_baresip(self.ctrl, self.proc)


async def sipp_calls(port: int, tmp_path: Path, name: str, calls: int, *,
                     held_ms: int | None = None) -> None:
    """`calls` sipp calls through Kamailio, all of which must succeed: short ones
    (1.5 s), or held for `held_ms` with A-law speech playing (uac_load)."""
    cwd = tmp_path / name
    cwd.mkdir()
    if held_ms is None:
        result = await run_sipp("uac_short_call", port, cwd, timeout=40,
                                extra=["-m", str(calls), "-l", "2"])
    else:
        result = await run_sipp("uac_load", port, cwd, timeout=40, extra=[
            "-m", str(calls), "-l", str(calls), "-r", "10", "-d", str(held_ms)])
    assert result.returncode == 0, f"{name}: {result.explain()}"
    assert re.search(rf"Successful call\s*\|\s*\d+\s*\|\s*{calls}\b", result.output), (
        name, result.output[-3000:])


async def test_calls_fail_over_from_a_draining_and_a_killed_gateway(tmp_path: Path) -> None:
    agents = await start_serve(tmp_path / "agents.log")  # the demo agent, served over /ws
    agent_url = f"ws://{LOCALHOST}:{agents.port}/ws"
    a, b = Gateway("a", tmp_path, agent_url), Gateway("b", tmp_path, agent_url)
    kamailio = phone = None
    kport = free_port()
    try:
        await asyncio.gather(a.start(), b.start())
        kamailio = await start_kamailio(tmp_path, kport, [a.sip_port, b.sip_port],
                                        log=tmp_path / "kamailio.log")
        phone = Baresip(tmp_path, kport)
        await phone.start()

        # 1. calls from sipp and baresip spread over both gateways
        await asyncio.gather(sipp_calls(kport, tmp_path, "spread", 4), phone.call())
        assert a.started() >= 2 and b.started() >= 2, (a.started(), b.started())
        assert a.started() + b.started() == 5

        # 2. A drains while its calls go on and new ones arrive
        held = asyncio.create_task(sipp_calls(kport, tmp_path, "held", 4, held_ms=9000))
        await wait_for(lambda: a.started() + b.started() == 9, 20, "the held calls")
        assert a.started() >= 4 and b.started() >= 4  # (two of the four held on each)
        held_on_a = await a.active()
        assert held_on_a >= 1
        assert a.served is not None
        a.served.proc.send_signal(signal.SIGTERM)
        for _ in range(100):
            if (await a.get("/ready"))[0] == 503:
                break
            await asyncio.sleep(0.05)
        status, body = await a.get("/ready")
        assert (status, body.get("reason")) == (503, "draining")
        a_before, b_before = a.started(), b.started()
        await asyncio.gather(sipp_calls(kport, tmp_path, "during-drain", 4), phone.call())
        assert a.started() == a_before, "a draining gateway took a new call"
        assert b.started() == b_before + 5
        assert "503 to" in a.log() and "draining" in a.log()  # Kamailio did fail over
        await held  # each held call ran to its BYE: none was cut
        assert await asyncio.wait_for(a.served.proc.wait(), 30) == 0
        drained = a.log().partition("draining")[2]  # what A logged from SIGTERM on
        ended = re.findall(r"call ended \((.*?)\)", drained)
        assert ended == ["caller hung up"] * held_on_a, ended
        await a.start()  # restarted, on the same ports

        # 3. B is killed while calls arrive
        assert b.served is not None
        b.served.proc.kill()
        await b.served.proc.wait()
        a_before = a.started()
        await asyncio.gather(sipp_calls(kport, tmp_path, "after-kill", 4), phone.call())
        assert a.started() == a_before + 5
        kamailio_log = (tmp_path / "kamailio.log").read_text(errors="replace")
        assert f"no answer from sip:{LOCALHOST}:{b.sip_port}" in kamailio_log
        assert f"retry on sip:{LOCALHOST}:{a.sip_port}" in kamailio_log
    finally:
        if phone is not None:
            await phone.stop()
        await stop_process(kamailio)
        for gw in (a, b):
            if gw.served is not None:
                await gw.served.stop(signal.SIGKILL)
        await agents.stop(signal.SIGKILL)
