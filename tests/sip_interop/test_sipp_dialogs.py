"""sipp against a real `atoms-gateway serve` process: digest authentication, re-INVITE
(hold, resume, codec change), SIP over TCP, and REFER for `agent.transfer_call`.

The gateway runs `setup` below (started as `atoms-gateway serve
tests.sip_interop.test_sipp_dialogs:setup`): the demo agent, except that a call whose
INVITE carries `X-Transfer-To` is transferred there right after a short sentence (and
the recogniser gets the demo's phrase grammar through ATOMS_STT_PHRASES).
sipp does the signalling from `sip_examples/sipp/`; where the media matters the offer
points at this test's RTP socket (`-inf` CSV), which records what the gateway sends.
sipp's message trace (`-trace_msg`) gives the exact messages and when they passed.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from agent.events import SDKAgentTransferConversationEvent, SDKEvent
from agent.session import AgentSession
from gateway.demo import PHRASES, DemoAgent
from gateway.sip.rtp import RtpPacket
from media.codecs import WireFormat
from tests.kit.speech import speech
from tests.sip_interop.helpers import (
    LOCALHOST,
    RtpPeer,
    active_seconds,
    decode_stream,
    free_port,
    open_rtp_peer,
    rms_dbfs,
    run_sipp,
)

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]
CLI = Path(sys.executable).parent / "atoms-gateway"
USER, PASSWORD = "alice", "s3cret"
TRANSFER_SENTENCE = "Transferring you now."


# ----------------------------------------------------------------------------- the app


class TransferringAgent(DemoAgent):
    """The demo agent; with `X-Transfer-To` in the INVITE it transfers there at once."""

    def __init__(self, session: AgentSession) -> None:
        super().__init__()
        self._session = session

    async def on_event(self, event: SDKEvent) -> None:
        target = self._session.initial_variables.get("X-Transfer-To")
        if event.type == "system.user.joined" and target:
            await self.speak(TRANSFER_SENTENCE)
            await self.send_event(SDKAgentTransferConversationEvent(transfer_call_number=target))
            return
        await super().on_event(event)


async def setup(session: AgentSession) -> None:
    """Setup handler of the gateway under test."""
    session.add_node(TransferringAgent(session))
    await session.start()
    await session.wait_until_complete()


# ----------------------------------------------------------------------------- the gateway


@dataclass
class Served:
    """A running `atoms-gateway serve` and its log."""

    proc: subprocess.Popen[bytes]
    sip_port: int
    http_port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def active_calls(self) -> int:
        import json

        with urllib.request.urlopen(f"http://{LOCALHOST}:{self.http_port}/health") as resp:
            return int(json.load(resp)["active_calls"])


def serve(tmp: Path, *extra: str) -> Iterator[Served]:
    sip_port, http_port = free_port(tcp_too=True), free_port(tcp_too=True)
    rtp = free_port(even=True)
    log = tmp / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(CLI), "serve", "tests.sip_interop.test_sipp_dialogs:setup",
             "--host", LOCALHOST, "--port", str(http_port), "--sip-host", LOCALHOST,
             "--sip-port", str(sip_port), "--rtp-ports", f"{rtp}-{min(rtp + 100, 65534)}",
             *extra],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            # the demo's phrase grammar (only the built-in demo app gets it by default)
            env={**os.environ, "PYTHONUNBUFFERED": "1", "ATOMS_STT_PHRASES": "|".join(PHRASES)})
    served = Served(proc, sip_port, http_port, log)
    try:
        deadline = time.monotonic() + 60
        while True:  # another process: poll /ready until it answers 200
            if proc.poll() is not None:
                pytest.fail(f"atoms-gateway exited {proc.returncode}\n{served.log_text()}")
            try:
                with urllib.request.urlopen(f"http://{LOCALHOST}:{http_port}/ready") as r:
                    if r.status == 200 and "SIP listening" in served.log_text():
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"atoms-gateway not ready\n{served.log_text()}")
            time.sleep(0.2)
        yield served
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = served.log_text()
    assert proc.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-3000:]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def auth_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from serve(tmp_path_factory.mktemp("serve-auth"), "--sip-user", USER,
                     "--sip-password", PASSWORD)


# ----------------------------------------------------------------------------- sipp's trace


@dataclass
class Traced:
    """One SIP message from sipp's `-trace_msg` log."""

    t: float  # when sipp sent or received it (epoch seconds, this host's clock)
    sent: bool
    first_line: str
    headers: dict[str, str]
    body: str

    @property
    def status(self) -> int | None:
        m = re.match(r"SIP/2\.0 (\d{3})", self.first_line)
        return int(m.group(1)) if m else None

    @property
    def method(self) -> str:
        return self.first_line.split(" ", 1)[0] if self.status is None else ""

    @property
    def cseq(self) -> tuple[int, str]:
        num, method = self.headers["cseq"].split()
        return int(num), method


def read_trace(cwd: Path) -> list[Traced]:
    (path,) = cwd.glob("*_messages.log")
    out: list[Traced] = []
    for block in re.split(r"^-{10,} ", path.read_text(errors="replace"), flags=re.M)[1:]:
        stamp, _, rest = block.partition("\n")
        kind, _, rest = rest.partition("\n")
        msg = rest.strip("\n").replace("\r\n", "\n")
        head, _, body = msg.partition("\n\n")
        lines = head.split("\n")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers.setdefault(name.strip().lower(), value.strip())
        t = datetime.strptime(stamp.strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append(Traced(t, " sent" in kind, lines[0].strip(), headers, body))
    return out


def find(trace: list[Traced], *, sent: bool, status: int | None = None,
         method: str | None = None, cseq: int | None = None) -> list[Traced]:
    return [m for m in trace if m.sent == sent
            and (status is None or m.status == status)
            and (method is None or m.method == method or m.cseq[1] == method)
            and (cseq is None or m.cseq[0] == cseq)]


def media_csv(tmp_path: Path, peer: RtpPeer) -> Path:
    csv = tmp_path / "media.csv"
    csv.write_text(f"SEQUENTIAL\n{LOCALHOST};{peer.port};\n")
    return csv


async def sipp_call(scenario: str, gateway: Served, tmp_path: Path, *extra: str
                    ) -> tuple[RtpPeer, list[Traced]]:
    """One sipp call of `scenario` whose media goes to a fresh RTP peer; it must succeed.
    Returns the peer (what the gateway sent) and sipp's message trace."""
    peer = await open_rtp_peer()
    result = await run_sipp(scenario, gateway.sip_port, tmp_path, timeout=40, extra=[
        *extra, "-inf", str(media_csv(tmp_path, peer)), "-trace_msg"])
    assert result.returncode == 0, result.explain()
    return peer, read_trace(tmp_path)


async def wait_idle(served: Served) -> None:
    """Until the gateway reports no active call (it ended the call, or timed out)."""
    for _ in range(200):
        if served.active_calls() == 0:
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"the call did not end\n{served.log_text()[-3000:]}")


def wall_times(peer: RtpPeer) -> list[float]:
    """When each RTP packet arrived, on the clock of sipp's trace (epoch seconds)."""
    offset = time.time() - time.monotonic()
    return [r.t + offset for r in peer.received]


def auth_param(value: str, name: str) -> str:
    """One parameter of a WWW-Authenticate or Authorization value."""
    m = re.search(rf'(?:^|[\s,]){name}="?([^",]*)', value)
    return m.group(1) if m else ""


def sdp_line(body: str, prefix: str) -> list[str]:
    return [line.strip() for line in body.splitlines() if line.startswith(prefix)]


# ----------------------------------------------------------------------------- tests


async def test_digest_auth_challenges_refuses_a_wrong_password_then_answers(
        auth_gateway: Served, tmp_path: Path) -> None:
    result = await run_sipp("uac_auth", auth_gateway.sip_port, tmp_path,
                            extra=["-au", USER, "-ap", PASSWORD, "-trace_msg"], timeout=30)
    assert result.returncode == 0, result.explain()
    trace = read_trace(tmp_path)
    invites = find(trace, sent=True, method="INVITE")
    assert [m.cseq[0] for m in invites] == [1, 2, 3]
    assert "authorization" not in invites[0].headers
    challenges = find(trace, sent=False, status=401)
    assert sorted({m.cseq[0] for m in challenges}) == [1, 2]  # no credentials, wrong password
    www = challenges[0].headers["www-authenticate"]
    assert 'realm="atoms-gateway"' in www and 'qop="auth"' in www and "algorithm=MD5" in www
    # the wrong and the right attempt each answer the challenge just before them, and
    # each 401 brought a fresh nonce
    first_401 = find(trace, sent=False, status=401, cseq=1)[0]
    second_401 = find(trace, sent=False, status=401, cseq=2)[0]
    assert auth_param(first_401.headers["www-authenticate"], "nonce") != auth_param(
        second_401.headers["www-authenticate"], "nonce")
    for attempt, challenge in ((invites[1], first_401), (invites[2], second_401)):
        auth = attempt.headers["authorization"]
        assert challenge.t < attempt.t and auth_param(auth, "username") == USER
        assert auth_param(auth, "nonce") == auth_param(
            challenge.headers["www-authenticate"], "nonce")
    (ok,) = find(trace, sent=False, status=200, cseq=3)
    assert sdp_line(ok.body, "m=audio") and sdp_line(ok.body, "a=rtpmap:0 PCMU/8000")
    await wait_idle(auth_gateway)
    log = auth_gateway.log_text()
    call_id = invites[0].headers["call-id"]
    assert log.count(f"401 to INVITE {call_id}") == 2
    assert f"call {call_id} ended (caller hung up)" in log
    # only INVITE is authenticated: OPTIONS keep-alives get 200 without credentials
    (tmp_path / "options").mkdir()
    probe = await run_sipp("uac_options", auth_gateway.sip_port, tmp_path / "options",
                           timeout=20)
    assert probe.returncode == 0, probe.explain()


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_reinvite_hold_resume_and_codec_change(
        gateway: Served, tmp_path: Path, transport: str) -> None:
    peer, trace = await sipp_call("uac_reinvite", gateway, tmp_path, "-t", transport)
    answers = {m.cseq[0]: m for m in find(trace, sent=False, status=200, method="INVITE")}
    assert sorted(answers) == [1, 2, 3, 4]
    first, hold, resume, pcma = (answers[n].body for n in (1, 2, 3, 4))
    # RFC 3264 6.1: sendonly is answered recvonly; same port and origin, version + 1 each
    assert sdp_line(first, "a=sendrecv") and sdp_line(hold, "a=recvonly")
    assert sdp_line(resume, "a=sendrecv")
    assert len({sdp_line(b, "m=audio")[0].split()[1] for b in (first, hold, resume, pcma)}) == 1
    origins = [sdp_line(b, "o=")[0].split() for b in (first, hold, resume, pcma)]
    assert len({(o[0], o[1]) for o in origins}) == 1
    assert [int(o[2]) for o in origins] == list(range(int(origins[0][2]),
                                                      int(origins[0][2]) + 4))
    assert sdp_line(first, "m=audio")[0].split()[3:] == ["0", "101"]
    assert sdp_line(pcma, "m=audio")[0].split()[3:] == ["8", "101"]
    assert sdp_line(pcma, "a=rtpmap:8") == ["a=rtpmap:8 PCMA/8000"]
    assert not sdp_line(pcma, "a=rtpmap:0")
    if transport == "t1":
        assert all("/TCP " in m.headers["via"] for m in trace if m.sent)
        assert "transport=tcp" in answers[1].headers["contact"]

    # what the gateway sent in each phase (the answer is decided before the 200 leaves,
    # so only packets already on their way may trail it, and a packet in the new format
    # may reach sipp before the 200 that announces it: allow 200 ms either side)
    t_hold, t_resume, t_pcma = (answers[n].t for n in (2, 3, 4))
    (bye,) = find(trace, sent=True, method="BYE")
    pkts = list(zip(wall_times(peer), [r.packet for r in peer.received], strict=True))
    before = [p for t, p in pkts if t < t_hold]
    held = [p for t, p in pkts if t_hold + 0.2 < t < t_resume]
    resumed = [p for t, p in pkts if t_resume + 0.2 < t < t_pcma - 0.2]
    after = [p for t, p in pkts if t_pcma + 0.2 < t < bye.t]
    assert len(before) > 50 and {p.payload_type for p in before} == {0}
    assert held == [], f"{len(held)} RTP packets sent while the caller held the call"
    assert len(resumed) > 25 and {p.payload_type for p in resumed} == {0}
    assert len(after) > 25 and {p.payload_type for p in after} == {8}
    assert len({p.ssrc for _, p in pkts}) == 1
    first_pcma = next(p for _, p in pkts if p.payload_type == 8)
    assert first_pcma.marker  # a new talkspurt in the new format
    # the payload really is in the announced law: decoded with it, the greeting has a
    # speech spectrum; decoded with the other law it is spread by the wrong companding
    for part, law, other in ((before, "pcmu", "pcma"), (after, "pcma", "pcmu")):
        pcm = decode_stream(part)
        assert rms_dbfs(pcm) > -40 and active_seconds(pcm, 8000) > 0.4
        assert low_band_share(part, law) > low_band_share(part, other) + 0.1
    await wait_idle(gateway)
    assert f"call {answers[1].headers['call-id']} ended (caller hung up)" in gateway.log_text()


def low_band_share(packets: list[RtpPacket], encoding: str) -> float:
    """The share of energy below 1.5 kHz in `packets` decoded as `encoding` (espeak
    speech: 0.83-0.97; the same payload decoded with the wrong law: 0.15-0.2 less)."""
    wire = WireFormat(encoding, 8000)  # type: ignore[arg-type]
    pcm = np.concatenate([wire.decode(p.payload) for p in packets]).astype(np.float64)
    spec = np.abs(np.fft.rfft(pcm)) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    return float(spec[freqs < 1500].sum() / max(spec.sum(), 1e-9))


@pytest.mark.parametrize("transport", ["u1", "t1"])
async def test_agent_transfer_sends_refer_then_bye_after_notify_200(
        gateway: Served, tmp_path: Path, transport: str) -> None:
    peer, trace = await sipp_call("uac_refer", gateway, tmp_path, "-t", transport)
    (ok,) = find(trace, sent=False, status=200, method="INVITE")
    (refer,) = find(trace, sent=False, method="REFER")
    assert refer.headers["refer-to"] == f"<sip:+15550100@{LOCALHOST}>"
    assert refer.headers["referred-by"].startswith("<sip:atoms@")
    # REFER is in the call's dialog: our tags, the caller's Contact as Request-URI
    assert refer.headers["call-id"] == ok.headers["call-id"]
    assert refer.headers["from"] == ok.headers["to"]
    assert refer.first_line.startswith("REFER sip:sipp@")
    assert [m.status for m in find(trace, sent=False, method="NOTIFY")] == [200, 200]
    (bye,) = find(trace, sent=False, method="BYE")
    assert bye.cseq[0] == refer.cseq[0] + 1 and bye.headers["from"] == refer.headers["from"]
    assert bye.t > find(trace, sent=True, method="NOTIFY")[-1].t
    if transport == "t1":
        assert "/TCP " in refer.headers["via"] and "/TCP " in bye.headers["via"]
    # the caller heard the agent's sentence before the REFER went out
    heard = [r.packet for t, r in zip(wall_times(peer), peer.received, strict=True)
             if t < refer.t]
    pcm = decode_stream(heard)
    assert rms_dbfs(pcm) > -40 and active_seconds(pcm, 8000) > 0.4
    await wait_idle(gateway)
    log = gateway.log_text()
    call_id = ok.headers["call-id"]
    assert f"call {call_id}: transfer 202 Accepted" in log
    assert f"call {call_id}: transfer 200 OK (final)" in log
    assert f"call {call_id} ended (transferred)" in log


async def test_tcp_call_hears_agent_and_agent_hangs_up(gateway: Served, tmp_path: Path) -> None:
    """A whole call over TCP: the caller hears the greeting, then says "goodbye"; the
    agent answers and its BYE comes over the same connection."""
    peer = await open_rtp_peer()
    sipp = asyncio.create_task(run_sipp(
        "uac_agent_hangs_up", gateway.sip_port, tmp_path, timeout=60,
        extra=["-t", "t1", "-inf", str(media_csv(tmp_path, peer)), "-trace_msg"]))
    loop = asyncio.get_running_loop()
    for _ in range(600):  # the greeting (about 11 s), then 0.8 s without RTP from us
        if sipp.done() or (len(peer.received) > 100 and loop.time() - peer.last_rx > 0.8):
            break
        await asyncio.sleep(0.05)
    assert len(peer.received) > 100 and not sipp.done(), "no greeting"
    greeting = decode_stream([r.packet for r in peer.received])
    await peer.speak(np.concatenate([speech("goodbye"), np.zeros(16000 * 2, np.int16)]))
    result = await sipp
    assert result.returncode == 0, result.explain()
    assert rms_dbfs(greeting) > -35 and active_seconds(greeting, 8000) > 1.0
    trace = read_trace(tmp_path)
    assert all("/TCP " in m.headers["via"] for m in trace if "via" in m.headers)
    (ok,) = find(trace, sent=False, status=200, method="INVITE")
    assert "transport=tcp" in ok.headers["contact"]
    (bye,) = find(trace, sent=False, method="BYE")
    assert bye.headers["call-id"] == ok.headers["call-id"]
    await wait_idle(gateway)
    call_id = ok.headers["call-id"]
    log = gateway.log_text()
    lines = "\n".join(line for line in log.splitlines() if call_id in line)
    assert f"call {call_id} ended (local hangup)" in log, lines


async def test_refused_transfer_plays_the_apology_then_hangs_up(
        gateway: Served, tmp_path: Path) -> None:
    """The agent stops talking when it asks for a transfer; if the far end refuses the
    REFER, the caller is not left in silence: the apology plays and the gateway hangs up."""
    peer, trace = await sipp_call("uac_refer_refused", gateway, tmp_path)
    (ok,) = find(trace, sent=False, status=200, method="INVITE")
    (refer,) = find(trace, sent=False, method="REFER")
    (bye,) = find(trace, sent=False, method="BYE")
    assert bye.t > refer.t
    # speech between the refusal and the BYE: the apology
    after = [r.packet for t, r in zip(wall_times(peer), peer.received, strict=True)
             if refer.t < t < bye.t]
    pcm = decode_stream(after)
    assert rms_dbfs(pcm) > -40 and active_seconds(pcm, 8000) > 1.0
    await wait_idle(gateway)
    log = gateway.log_text()
    call_id = ok.headers["call-id"]
    lines = "\n".join(line for line in log.splitlines() if call_id in line)
    assert f"call {call_id}: transfer 603 Decline (final)" in log, lines
    assert f"call {call_id} ended (local hangup)" in log, lines
