"""RTP packets, the sender, RFC 4733 DTMF and the jitter buffer."""

from __future__ import annotations

import struct

import pytest

from gateway.sip.dtmf import DtmfDecoder, TelephoneEvent, dtmf_packets, parse_event
from gateway.sip.jitter import LOST, JitterBuffer
from gateway.sip.rtp import RtpError, RtpPacket, RtpSender, is_rtcp, parse_rtp


def test_packet_round_trip_with_every_header_field() -> None:
    pkt = RtpPacket(
        payload_type=8,
        sequence=65535,
        timestamp=0xFFFFFFF0,
        ssrc=0xDEADBEEF,
        payload=b"\x55" * 160,
        marker=True,
        csrcs=(1, 2, 3),
        extension=(0xBEDE, b"\x10\xaa\x00\x00"),
        padding=4,
    )
    raw = pkt.to_bytes()
    assert len(raw) == 12 + 12 + 4 + 4 + 160 + 4
    assert raw[0] >> 6 == 2 and raw[0] & 0x20 and raw[0] & 0x10 and raw[0] & 0x0F == 3
    assert parse_rtp(raw) == pkt


def test_parse_minimal_packet_built_by_hand() -> None:
    raw = struct.pack("!BBHII", 0x80, 0x80 | 0, 1234, 5678, 42) + b"abc"
    pkt = parse_rtp(raw)
    assert (pkt.payload_type, pkt.marker, pkt.sequence, pkt.timestamp, pkt.ssrc) == (
        0, True, 1234, 5678, 42,
    )  # fmt: skip
    assert pkt.payload == b"abc" and pkt.csrcs == () and pkt.extension is None


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\x80\x00", "too short"),
        (b"\x40" + bytes(11), "version"),
        (b"\x85" + bytes(11), "CSRC"),
        (b"\x90" + bytes(11) + b"\x00\x00\x00\x05", "extension"),
        (b"\xa0" + bytes(11) + b"\x00", "padding"),
        (b"\xa0" + bytes(11) + b"\x09", "padding"),
    ],
)
def test_malformed_rtp(raw: bytes, fragment: str) -> None:
    with pytest.raises(RtpError, match=fragment):
        parse_rtp(raw)


def test_rtcp_is_recognized_and_not_parsed_as_rtp() -> None:
    receiver_report = struct.pack("!BBHI", 0x80, 201, 1, 0x1234)
    sender_report = struct.pack("!BBHI", 0x80, 200, 6, 0x1234) + bytes(20)
    for raw in (receiver_report, sender_report):
        assert is_rtcp(raw)
        with pytest.raises(RtpError, match="RTCP"):
            parse_rtp(raw)
    assert not is_rtcp(RtpPacket(0, 1, 2, 3, b"x").to_bytes())


def test_sender_sequence_timestamp_wraparound_and_marker() -> None:
    sender = RtpSender(0, ssrc=7, sequence=65534, timestamp=0xFFFFFF00)
    packets = [parse_rtp(sender.packet(bytes(160))) for _ in range(4)]
    assert [p.sequence for p in packets] == [65534, 65535, 0, 1]
    assert [p.timestamp for p in packets] == [
        0xFFFFFF00, 0xFFFFFF00 + 160, (0xFFFFFF00 + 320) & 0xFFFFFFFF, (0xFFFFFF00 + 480) & 0xFFFFFFFF,
    ]  # fmt: skip
    assert [p.marker for p in packets] == [True, False, False, False]
    assert {p.ssrc for p in packets} == {7}
    sender.skip(800)  # 100 ms of silence not sent
    after = parse_rtp(sender.packet(bytes(160)))
    assert after.marker and after.sequence == 2
    assert after.timestamp == (packets[-1].timestamp + 160 + 800) & 0xFFFFFFFF
    sender.start_talkspurt()
    assert parse_rtp(sender.packet(bytes(160))).marker
    assert sender.packets_sent == 6 and sender.octets_sent == 960


def test_sender_random_start_values_differ() -> None:
    a, b = RtpSender(0), RtpSender(0)
    assert (a.ssrc, a.sequence, a.timestamp) != (b.ssrc, b.sequence, b.timestamp)


def test_dtmf_packets_follow_rfc4733() -> None:
    sender = RtpSender(0, ssrc=99, sequence=100, timestamp=8000)
    raws = dtmf_packets(sender, "5", 101, duration_ms=100, volume=10)
    packets = [parse_rtp(r) for r in raws]
    events = [parse_event(p.payload) for p in packets]
    assert len(packets) == 4 + 3  # 4 updates, then the end packet three times
    assert [p.sequence for p in packets] == list(range(100, 107))
    assert {p.timestamp for p in packets} == {8000}
    assert [p.marker for p in packets] == [True] + [False] * 6
    assert {p.payload_type for p in packets} == {101}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False, False, False, False, True, True, True]
    assert all(e.event == 5 and e.volume == 10 for e in events)
    audio = parse_rtp(sender.packet(bytes(160)))
    assert audio.sequence == 107 and audio.marker and audio.timestamp == 8000 + 7 * 160


def test_dtmf_decoder_reports_each_digit_once() -> None:
    sender = RtpSender(0, ssrc=5, sequence=65530, timestamp=0xFFFFFE00)
    stream: list[RtpPacket] = []
    for digit in "19*#A":
        stream += [parse_rtp(r) for r in dtmf_packets(sender, digit, 101)]
        stream += [parse_rtp(sender.packet(bytes(160))) for _ in range(3)]
    stream += [parse_rtp(r) for r in dtmf_packets(sender, "1", 101)]  # same key again
    decoder = DtmfDecoder()
    got = [d for p in stream if p.payload_type == 101 and (d := decoder.feed(p)) is not None]
    assert got == ["1", "9", "*", "#", "A", "1"]


def test_dtmf_decoder_ignores_late_packets_of_an_old_event() -> None:
    sender = RtpSender(0, ssrc=5, sequence=0, timestamp=1000)
    first = [parse_rtp(r) for r in dtmf_packets(sender, "3", 101)]
    second = [parse_rtp(r) for r in dtmf_packets(sender, "4", 101)]
    decoder = DtmfDecoder()
    order = first[:2] + second[:1] + first[2:] + second[1:]
    assert [d for p in order if (d := decoder.feed(p))] == ["3", "4"]
    with pytest.raises(RtpError):
        decoder.feed(RtpPacket(101, 0, 0, 5, b"\x01"))
    assert TelephoneEvent(16, True, 0, 8).digit == "!"
    with pytest.raises(ValueError):
        dtmf_packets(sender, "x", 101)


def frames(seqs: list[int], ssrc: int = 1) -> list[RtpPacket]:
    return [RtpPacket(0, s & 0xFFFF, s * 160, ssrc, f"f{s}".encode()) for s in seqs]


def test_jitter_buffer_reorders_across_wraparound() -> None:
    jb = JitterBuffer(depth_frames=3)
    seqs = [65533, 65535, 65534, 1, 0, 2, 3]
    out = []
    for pkt in frames(seqs):
        jb.push(pkt)
        out.append(jb.pop())
    out += [jb.pop() for _ in range(3)]
    played = [x for x in out if isinstance(x, bytes)]
    in_order = [65533, 65534, 65535, 0, 1, 2, 3]
    assert played == [f"f{s}".encode() for s in in_order]
    assert out[:2] == [None, None]  # priming: nothing plays until depth is buffered
    assert all(x is not LOST for x in out[:-1])  # no frame was missing in the reordered run
    assert out[-1] is LOST  # the stream ended: the first empty tick is concealed


def test_jitter_buffer_drops_late_and_duplicate() -> None:
    jb = JitterBuffer(depth_frames=2)
    pkts = frames(list(range(10, 20)))
    jb.push(pkts[0])
    jb.push(pkts[1])
    assert jb.pop() == b"f10"
    assert jb.pop() == b"f11"
    assert not jb.push(pkts[0])  # late: already played
    jb.push(pkts[2])
    assert not jb.push(pkts[2])  # duplicate
    assert jb.stats.late == 1 and jb.stats.duplicate == 1


def test_jitter_buffer_conceals_one_lost_frame() -> None:
    jb = JitterBuffer(depth_frames=2)
    out = []
    for pkt in frames([0, 1, 2, 4, 5, 6]):  # 3 never arrives
        jb.push(pkt)
        out.append(jb.pop())
    out += [jb.pop() for _ in range(3)]
    assert out[0] is None
    assert out[1:5] == [b"f0", b"f1", b"f2", LOST]
    assert out[5:7] == [b"f4", b"f5"]
    assert jb.stats.lost >= 1


def test_jitter_buffer_underrun_conceals_then_reprimes() -> None:
    jb = JitterBuffer(depth_frames=2)
    for pkt in frames([0, 1]):
        jb.push(pkt)
    assert [jb.pop(), jb.pop()] == [b"f0", b"f1"]
    assert jb.pop() is LOST  # the stream stalled: conceal one frame
    assert jb.pop() is None  # then silence until primed again
    jb.push(frames([3])[0])
    assert jb.pop() is None
    jb.push(frames([4])[0])
    assert jb.pop() == b"f3"


def test_jitter_buffer_resyncs_on_ssrc_change_and_big_jump() -> None:
    jb = JitterBuffer(depth_frames=1)
    jb.push(frames([100])[0])
    assert jb.pop() == b"f100"
    jb.push(frames([5000])[0])  # a jump: restart instead of waiting or dropping
    assert jb.pop() == b"f5000"
    jb.push(frames([7], ssrc=2)[0])  # new source (e.g. after a transfer)
    assert jb.pop() == b"f7"
    assert jb.stats.resyncs == 2


def test_jitter_buffer_bounds_its_delay() -> None:
    jb = JitterBuffer(depth_frames=2, max_frames=4)
    for pkt in frames(list(range(10))):  # a burst after a network stall
        jb.push(pkt)
    assert len(jb) == 4
    assert jb.pop() == b"f6"
    assert jb.stats.overflow == 6
    with pytest.raises(ValueError):
        JitterBuffer(depth_frames=0)
