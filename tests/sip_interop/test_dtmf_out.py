"""The agent presses keys on a SIP call (`agent.send_dtmf`). sipp signals, this test's
own UDP socket is the caller's media and reads what the gateway sends.

With telephone-event in the caller's offer the digits arrive as RFC 4733 events after
the agent's audio, in correct form, before the agent's BYE; without it they arrive as
dual tones inside the PCMU audio.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from agent.events import SDKAgentAudioEvent, SDKAgentEndCallEvent, SDKAgentSendDtmfEvent
from agent.nodes import Node
from gateway.sip.dtmf import DIGITS, parse_event
from media.dtmf_tones import DTMF_KEYS, dtmf_frequencies
from tests.kit.audio import detect
from tests.sip_interop.helpers import (
    SCENARIOS,
    decode_stream,
    open_rtp_peer,
    run_sipp,
    start_gateway,
    wait_for,
)

pytestmark = pytest.mark.timeout(120)

HUM = (6000 * np.sin(2 * np.pi * 440 * np.arange(9600) / 16000)).astype("<i2")  # 600 ms


async def press_then_hang_up(session):
    class Presser(Node):
        async def process_event(self, event):
            if event.type == "system.user.joined":
                await self.send_event(SDKAgentAudioEvent(pcm=HUM.tobytes()))
                await self.send_event(SDKAgentSendDtmfEvent(digits="1#"))
                await self.send_event(SDKAgentEndCallEvent())

    session.add_node(Presser("presser"))
    await session.start()
    await session.wait_until_complete()


async def call_and_listen(tmp_path: Path, scenario: str | Path):
    app = await start_gateway(setup_handler=press_then_hang_up)
    try:
        peer = await open_rtp_peer()
        csv = tmp_path / "media.csv"
        csv.write_text(f"SEQUENTIAL\n127.0.0.1;{peer.port};\n")
        result = await run_sipp(str(scenario), app.sip_port, tmp_path,
                                extra=["-inf", str(csv)], timeout=30)
        assert result.returncode == 0, result.explain()  # the agent's BYE came
        await wait_for(lambda: app.opened and app.opened[0].closed, 5, "the call to end")
    finally:
        await app.stop(drain_timeout=0)
    return [r.packet for r in peer.received], app.opened[0]


async def test_rfc4733_digits_after_the_agent_audio(tmp_path: Path) -> None:
    pkts, call = await call_and_listen(tmp_path, "uac_agent_hangs_up")
    assert [e["digits"] for e in call.timeline if e["type"] == "agent.send_dtmf"] == ["1#"]
    events = [p for p in pkts if p.payload_type == 101]  # the caller's telephone-event PT
    assert {p.payload_type for p in pkts} == {0, 101}
    # one RTP stream: one SSRC, no sequence gaps; the whole hum, the digits, then silence
    assert len({p.ssrc for p in pkts}) == 1
    assert all((b.sequence - a.sequence) & 0xFFFF == 1
               for a, b in zip(pkts, pkts[1:], strict=False))
    first_event, last_event = pkts.index(events[0]), pkts.index(events[-1])
    audio, tail = pkts[:first_event], pkts[last_event + 1 :]
    assert all(p.payload_type == 0 for p in audio + tail)
    assert pkts[first_event : last_event + 1] == events
    assert abs(len(decode_stream(audio)) - len(HUM) // 2) <= 160  # 600 ms, nothing cut
    assert pkts[0].marker
    assert all((b.timestamp - a.timestamp) & 0xFFFFFFFF == 160
               for a, b in zip(audio, audio[1:], strict=False))

    by_event: dict[int, list] = {}
    for p in events:
        by_event.setdefault(p.timestamp, []).append(p)
    assert len(by_event) == 2
    keys = []
    for group in by_event.values():
        tel = [parse_event(p.payload) for p in group]
        keys.append(DIGITS[tel[0].event])
        assert len({t.event for t in tel}) == 1
        assert [p.marker for p in group] == [True] + [False] * (len(group) - 1)
        assert [t.end for t in tel] == [False] * (len(tel) - 3) + [True] * 3
        durations = [t.duration for t in tel]
        assert durations == sorted(durations) and durations[0] == 160
        assert durations[-3:] == [800] * 3  # 100 ms at 8 kHz, the end sent three times
    assert keys == ["1", "#"]
    # the events' timestamps follow the audio's clock: the first one is where the next
    # audio frame would be (the voice loop went quiet for one or two ticks at most)
    first_ts, second_ts = by_event
    step = (first_ts - audio[-1].timestamp) & 0xFFFFFFFF
    assert 160 <= step <= 3 * 160, step
    assert (second_ts - first_ts) & 0xFFFFFFFF == 9 * 160  # 7 packets + 2 silent ticks
    # 200 ms of silence after the last key lets a receiver's jitter buffer release it
    assert len(tail) == 10 and tail[0].marker
    assert (tail[0].timestamp - second_ts) & 0xFFFFFFFF == 9 * 160
    assert not decode_stream(tail).any()


async def test_tones_in_band_without_telephone_event(tmp_path: Path) -> None:
    xml = (SCENARIOS / "uac_agent_hangs_up.xml").read_text()
    xml = xml.replace("RTP/AVP 0 8 101", "RTP/AVP 0 8")
    xml = xml.replace("      a=rtpmap:101 telephone-event/8000\n      a=fmtp:101 0-15\n", "")
    assert "101" not in xml.split("<![CDATA[")[1].split("]]>")[0]
    (tmp_path / "no_dtmf.xml").write_text(xml)
    pkts, call = await call_and_listen(tmp_path, tmp_path / "no_dtmf")
    assert {p.payload_type for p in pkts} == {0}
    pcm8k = decode_stream(pkts).astype(np.int32)
    start = len(HUM) // 2 + np.flatnonzero(np.abs(pcm8k) > 200)[0]  # after the hum
    keys = []
    for i in range(2):  # 100 ms tone, 100 ms gap, at 8 kHz
        tone = np.repeat(pcm8k[start + i * 1600 + 80 : start + i * 1600 + 720], 2)
        found, _ = detect(tone.astype(np.int16))
        keys.append(next((k for k in DTMF_KEYS if sorted(dtmf_frequencies(k)) == found), "?"))
    assert keys == ["1", "#"]
