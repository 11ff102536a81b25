"""Caller packets of any ptime reach the voice loop as 20 ms of audio per media tick."""

from __future__ import annotations

from gateway.media_tick import MediaTick
from gateway.sip.rtp import RtpSender
from gateway.transports.rtp import PortPool, RtpEndpoint, RtpTransport
from tests.sip.samples import NATTED
from tests.sip.samples import answered_session as session


async def transport() -> RtpTransport:
    udp, endpoint, _port = await PortPool(41000, 41100).bind("127.0.0.1", RtpEndpoint)
    s = session()  # A-law, our RTP address 192.0.2.10
    endpoint.session = s
    return RtpTransport(s, udp, endpoint, on_hangup=lambda: None,
                        on_transfer=lambda _target: None, tick=MediaTick())


async def ticks_of(ptime_ms: int, packets: int, tr: RtpTransport) -> list[bytes | None]:
    """Send `packets` packets of `ptime_ms` (byte values 1, 2, 3...), then pop one tick's
    audio after each packet and a few more."""
    caller = RtpSender(8, ssrc=9, sequence=1, timestamp=0)
    out = []
    for i in range(packets):
        tr.session.receive(caller.packet(bytes([i + 1]) * (8 * ptime_ms)), NATTED)
    for _ in range(packets * ptime_ms // 20 + 3):
        out.append(tr.pop_audio())
    tr.close()
    return out


async def test_30_ms_packets_play_as_20_ms_ticks_in_real_time() -> None:
    out = await ticks_of(30, 4, await transport())  # 120 ms: six ticks
    audio = b"".join(p for p in out if p is not None)
    assert all(p is None or len(p) == 160 for p in out)
    expected = b"".join(bytes([i + 1]) * 240 for i in range(4))
    assert audio.startswith(expected)  # every byte once, in order (then a concealed tick)
    assert out[:6] == [expected[k : k + 160] for k in range(0, 960, 160)]
    assert out[-1] is None  # nothing more arrived: silence, nothing to decode


async def test_10_ms_packets_fill_each_tick_with_two() -> None:
    out = await ticks_of(10, 6, await transport())  # 60 ms: three ticks
    expected = b"".join(bytes([i + 1]) * 80 for i in range(6))
    assert out[:3] == [expected[k : k + 160] for k in range(0, 480, 160)]


async def test_a_lost_packet_repeats_the_one_before_and_a_short_end_is_padded() -> None:
    tr = await transport()
    caller = RtpSender(8, ssrc=9, sequence=1, timestamp=0)
    packets = [caller.packet(bytes([i + 1]) * 240) for i in range(4)]
    for data in packets[:1] + packets[2:]:  # the second one is lost
        tr.session.receive(data, NATTED)
    out = [tr.pop_audio() for _ in range(10)]
    tr.close()
    # 1, 1 again (concealed), 3, 4, 4 again (the end of the stream, concealed once): 7.5
    # ticks, the last half filled with A-law silence, then silence that needs no decoding
    heard = bytes([1]) * 480 + bytes([3]) * 240 + bytes([4]) * 480 + b"\xd5" * 80
    assert out[:8] == [heard[k : k + 160] for k in range(0, 1280, 160)]
    assert out[8:] == [None, None]
