"""A SIP caller frame's time is when its packet came off the wire, not when the jitter
buffer let it go: the barge-in detector pairs caller frames with the agent audio whose echo
they carry by these times, and the buffer's hold would lengthen every SIP call's echo."""

from __future__ import annotations

import pytest

from gateway.media_tick import MediaTick
from gateway.sip.jitter import LOST, JitterBuffer
from gateway.sip.rtp import RtpSender, parse_rtp
from gateway.transports.rtp import PortPool, RtpEndpoint, RtpTransport
from tests.sip.samples import NATTED
from tests.sip.samples import answered_session as session


async def transport() -> RtpTransport:
    udp, endpoint, _port = await PortPool(41100, 41200).bind("127.0.0.1", RtpEndpoint)
    s = session()  # A-law, our RTP address 192.0.2.10
    endpoint.session = s
    return RtpTransport(s, udp, endpoint, on_hangup=lambda: None,
                        on_transfer=lambda _target: None, tick=MediaTick())


def test_the_jitter_buffer_hands_on_each_packets_arrival() -> None:
    buf = JitterBuffer(depth_frames=2)
    caller = RtpSender(0, ssrc=7, sequence=10, timestamp=0)
    packets = [parse_rtp(caller.packet(bytes([i]) * 160)) for i in range(4)]
    for i in (0, 1, 3):  # the third is lost
        buf.push(packets[i], arrived=1.0 + 0.02 * i)
    assert buf.pop() == bytes([0]) * 160 and buf.popped_arrival == 1.0
    assert buf.pop() == bytes([1]) * 160 and buf.popped_arrival == 1.02
    assert buf.pop() is LOST and buf.popped_arrival is None
    assert buf.pop() == bytes([3]) * 160 and buf.popped_arrival == 1.06
    buf.push(parse_rtp(caller.packet(b"\x05" * 160)))  # not told: no arrival
    assert buf.pop() == b"\x05" * 160 and buf.popped_arrival is None


async def test_a_frames_time_is_its_packets_arrival_and_now_for_silence() -> None:
    tr = await transport()
    caller = RtpSender(8, ssrc=9, sequence=1, timestamp=0)
    tr.session.receive(caller.packet(b"\x01" * 160), NATTED, arrived=5.0)
    tr.session.receive(caller.packet(b"\x02" * 320), NATTED, arrived=5.04)  # 40 ms
    tr.endpoint.now = lambda: 5.06  # (as the socket sees it: the call's clock)
    tr.endpoint.datagram_received(caller.packet(b"\x03" * 160), NATTED)
    got = [tr.take_payloads() for _ in range(5)]
    now = tr._tick.clock.now()
    tr.close()
    assert [p for (p,), _ in got[:4]] == [b"\x01" * 160, b"\x02" * 160, b"\x02" * 160,
                                          b"\x03" * 160]
    # the 40 ms packet's first half was spoken 20 ms before its second, which came at 5.04
    assert [t for _, (t,) in got[:4]] == pytest.approx([5.0, 5.02, 5.04, 5.06])
    _, (t,) = got[4]  # nothing more came (a concealed tick): this tick's time, now
    assert t >= now - 1.0 and t != 5.06
