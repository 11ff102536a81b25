"""sipp (a SIP test tool nobody here wrote) against the gateway in this process.

The scenarios are the ones in `sip_examples/sipp/`; the gateway runs the demo agent.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from gateway.sip.rtp import RtpSender
from tests.kit.speech import speech
from tests.sip_interop.helpers import (
    active_seconds,
    decode_stream,
    open_rtp_peer,
    rms_dbfs,
    run_sipp,
    start_gateway,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
async def gateway():
    app = await start_gateway(sip_ring_ms=800)
    try:
        yield app
    finally:
        await app.stop(drain_timeout=0)


async def test_options_ping(gateway, tmp_path: Path) -> None:
    result = await run_sipp("uac_options", gateway.sip_port, tmp_path, timeout=20)
    assert result.returncode == 0, result.explain()
    assert gateway.opened == []


async def test_malformed_and_unsupported_requests(gateway, tmp_path: Path) -> None:
    result = await run_sipp("uac_malformed", gateway.sip_port, tmp_path, timeout=20)
    assert result.returncode == 0, result.explain()
    assert gateway.opened == []
    # garbage straight on the socket is dropped; the server still answers afterwards
    loop = asyncio.get_running_loop()
    udp, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                 remote_addr=("127.0.0.1", gateway.sip_port))
    for junk in (b"\x00\xff" * 300, b"INVITE\r\n\r\n", b"SIP/2.0 200\r\n\r\n", b"\r\n\r\n"):
        udp.sendto(junk)
    udp.close()
    again = await run_sipp("uac_options", gateway.sip_port, tmp_path, timeout=20)
    assert again.returncode == 0, again.explain()


async def test_cancel_while_ringing(gateway, tmp_path: Path) -> None:
    result = await run_sipp("uac_cancel", gateway.sip_port, tmp_path, timeout=20)
    assert result.returncode == 0, result.explain()
    assert gateway.opened == []  # the voice loop never started
    assert gateway.sip.media == {}  # and no RTP port is held


async def test_retransmitted_invite_is_one_call(gateway, tmp_path: Path) -> None:
    result = await run_sipp("uac_retransmit", gateway.sip_port, tmp_path, timeout=30)
    assert result.returncode == 0, result.explain()
    assert len(gateway.opened) == 1
    await wait_for(lambda: not gateway.calls, 5, "the call to end after BYE")
    assert gateway.opened[0].closed


async def test_pcap_audio_and_dtmf_then_caller_bye(gateway, tmp_path: Path) -> None:
    """sipp plays its A-law speech pcap (30 ms packets) and the '1' key (RFC 4733)."""
    result = await run_sipp("uac_pcap_dtmf", gateway.sip_port, tmp_path, timeout=40)
    assert result.returncode == 0, result.explain()
    assert len(gateway.opened) == 1
    call = gateway.opened[0]
    await wait_for(lambda: call.closed, 5, "the call to end after the caller's BYE")
    digits = [e["digit"] for e in call.timeline if e["type"] == "system.dtmf"]
    assert digits == ["1"]
    # the caller's speech went through jitter buffer, decoder and VAD
    assert any(e["type"] == "system.user.started_speaking" for e in call.timeline)
    ctx = call.session.context  # type: ignore[attr-defined]
    assert ctx["x_headers"] == {"X-Customer-Id": "4242"}
    assert ctx["user_number"] == "+15551230001"
    assert ctx["provider"] == "sip"


async def wait_quiet(peer, quiet_s: float, timeout: float) -> None:
    """Wait until the gateway has sent nothing for `quiet_s` (the agent finished)."""
    loop = asyncio.get_running_loop()
    await wait_for(lambda: peer.received and loop.time() - peer.last_rx > quiet_s, timeout,
                   "the agent to finish talking")


async def test_call_hears_agent_then_agent_hangs_up(gateway, tmp_path: Path) -> None:
    """sipp signals, this test is the caller's media: it hears the greeting (checking the
    RTP headers), talks over it with "goodbye", and the agent answers and sends BYE."""
    peer = await open_rtp_peer()
    csv = tmp_path / "media.csv"
    csv.write_text(f"SEQUENTIAL\n127.0.0.1;{peer.port};\n")
    sipp = asyncio.create_task(run_sipp("uac_agent_hangs_up", gateway.sip_port, tmp_path,
                                         extra=["-inf", str(csv)], timeout=60))
    await wait_for(lambda: len(peer.received) >= 100, 20, "2 s of the agent's greeting")
    greeting_before = len(peer.received)

    # talk over the greeting, then (once the agent's reply is over) say goodbye
    sender = RtpSender(0)
    onset_index = len(peer.received)
    await peer.speak(np.concatenate([speech("what time is it"),
                                     np.zeros(16000, dtype=np.int16)]), sender=sender)
    await wait_quiet(peer, 0.8, 20)
    await peer.speak(np.concatenate([speech("goodbye"), np.zeros(16000 * 2, dtype=np.int16)]),
                     sender=sender)
    result = await sipp
    call = gateway.opened[0]
    assert result.returncode == 0, f"{result.explain()}\n{call.timeline}"

    pkts = [r.packet for r in peer.received]
    assert {p.payload_type for p in pkts} == {0}  # PCMU: the caller's first choice
    assert len({p.ssrc for p in pkts}) == 1
    assert pkts[0].marker
    for a, b in zip(pkts, pkts[1:], strict=False):
        assert (b.sequence - a.sequence) & 0xFFFF == 1
        step = (b.timestamp - a.timestamp) & 0xFFFFFFFF
        assert step == 160 or b.marker, (a, b)  # 20 ms, or a new talkspurt after a pause
    assert all(len(p.payload) == 160 for p in pkts)

    greeting = decode_stream(pkts[:greeting_before])
    assert rms_dbfs(greeting) > -35.0
    assert active_seconds(greeting, 8000) > 1.0

    # barge-in: the greeting (11 s long) stops soon after the caller starts talking
    assert call.interrupts, call.timeline
    after_onset = pkts[onset_index:]
    gaps = [i for i, (a, b) in enumerate(zip(after_onset, after_onset[1:], strict=False))
            if b.marker and (b.timestamp - a.timestamp) & 0xFFFFFFFF > 160]
    assert gaps, "the agent never paused after the caller talked over it"
    frames_heard_after_onset = gaps[0] + 1
    assert frames_heard_after_onset * 20 < 1500
    # then the reply to "goodbye", and the hang-up after it played out
    assert any(e["type"] == "call.hangup" for e in call.timeline)
    said = [e.get("content") for e in call.timeline
            if e["type"] == "agent.transcript.update" and e.get("role") == "user"]
    assert said and "goodbye" in (said[-1] or "").lower(), said
    ctx = call.session.context  # type: ignore[attr-defined]
    assert ctx["x_headers"] == {"X-Campaign": "spring"}
