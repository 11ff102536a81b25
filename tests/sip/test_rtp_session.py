"""Per-call RTP state: answer, symmetric RTP latching, jitter, DTMF in and out, hold."""

from __future__ import annotations

import struct

import pytest

from gateway.sip.dtmf import DtmfDecoder, dtmf_packets
from gateway.sip.jitter import LOST
from gateway.sip.rtp import RtpSender, parse_rtp
from gateway.sip.rtp_session import LATCH_BURST
from gateway.sip.sdp import NoCommonCodec, parse_sdp
from tests.sip import samples
from tests.sip.samples import CALLER_RTP, NATTED
from tests.sip.samples import answered_session as session


def test_answer_versions_grow_and_codec_change_keeps_stream() -> None:
    s = session()
    assert s.encoding == "pcma" and s.remote_addr == CALLER_RTP
    first = parse_sdp(s.answer(samples.ASTERISK_SDP.encode())).origin.split()
    assert s.sender is not None
    ssrc = s.sender.ssrc
    pcmu_first = samples.ASTERISK_SDP.replace("RTP/AVP 8 0 101", "RTP/AVP 0 8 101")
    second = parse_sdp(s.answer(pcmu_first.encode())).origin.split()
    assert first[1] == second[1] and int(second[2]) == int(first[2]) + 1
    assert s.encoding == "pcmu" and s.sender.payload_type == 0 and s.sender.ssrc == ssrc
    with pytest.raises(NoCommonCodec):
        s.answer(samples.ASTERISK_SDP.replace("RTP/AVP 8 0 101", "RTP/AVP 9").encode())


def test_symmetric_rtp_latches_to_the_real_source() -> None:
    s = session()
    out = s.next_packet(b"\xd5" * 160)
    assert out is not None and out[1] == CALLER_RTP  # before any packet: the SDP address
    caller = RtpSender(8, ssrc=77, sequence=10, timestamp=0)
    assert s.receive(caller.packet(b"\x01" * 160), NATTED) == []
    out = s.next_packet(b"\xd5" * 160)
    assert out is not None and out[1] == NATTED
    pkt = parse_rtp(out[0])
    assert pkt.payload_type == 8 and len(pkt.payload) == 160


def test_rtcp_garbage_and_stray_payload_types_are_ignored() -> None:
    s = session()
    rtcp = struct.pack("!BBHI", 0x81, 201, 7, 77) + bytes(24)
    stray = RtpSender(96, ssrc=1).packet(b"opus")
    for data in (rtcp, b"\x00\x01junk", stray):
        assert s.receive(data, ("198.51.100.1", 9)) == []
    assert s.ignored == 3 and s.remote_addr == CALLER_RTP  # nothing latched on junk


def test_inbound_audio_and_dtmf_through_the_jitter_buffer() -> None:
    s = session()
    caller = RtpSender(8, ssrc=5, sequence=100, timestamp=0)
    packets = [caller.packet(bytes([i]) * 160) for i in range(3)]
    packets += dtmf_packets(caller, "7", 101, duration_ms=60)
    packets += [caller.packet(bytes([9]) * 160) for _ in range(3)]
    digits: list[str] = []
    frames = []
    order = packets[:1] + packets[2:3] + packets[1:2] + packets[3:]  # one swap
    for data in order:
        digits += s.receive(data, NATTED)
        frames.append(s.pop_frame())
    frames += [s.pop_frame() for _ in range(3)]
    assert digits == ["7"]
    audio = [f for f in frames if isinstance(f, bytes)]
    assert audio == [bytes([0]) * 160, bytes([1]) * 160, bytes([2]) * 160] + [bytes([9]) * 160] * 3
    assert LOST not in frames[:-2]  # the DTMF packets filled their sequence slots
    assert frames[-2:] == [LOST, None]  # end of stream: one concealed frame, then silence


def test_outbound_dtmf_replaces_audio_for_its_ticks() -> None:
    s = session()
    s.send_digits("12")
    sent = [s.next_packet(b"\xd5" * 160) for _ in range(24)]
    packets = [parse_rtp(p[0]) for p in sent if p is not None]
    events = [p for p in packets if p.payload_type == 101]
    decoder = DtmfDecoder()
    assert [d for p in events if (d := decoder.feed(p))] == ["1", "2"]
    audio = [p for p in packets if p.payload_type == 8]
    assert audio and audio[0].marker
    seqs = [p.sequence for p in packets]
    assert seqs == [(seqs[0] + i) & 0xFFFF for i in range(len(seqs))]
    # the audio timestamp equals real time: 24 ticks of 160 samples from the start
    first_ts = events[0].timestamp
    assert audio[-1].timestamp == (first_ts + 23 * 160) & 0xFFFFFFFF


def test_hold_stops_sending_and_resume_restarts() -> None:
    s = session()
    hold = samples.ASTERISK_SDP.replace("a=sendrecv", "a=sendonly")
    assert b"a=recvonly" in s.answer(hold.encode())
    assert s.next_packet(b"\xd5" * 160) is None
    assert b"a=sendrecv" in s.answer(samples.ASTERISK_SDP.encode())
    out = s.next_packet(b"\xd5" * 160)
    assert out is not None and parse_rtp(out[0]).marker


STRANGER = ("198.51.100.66", 5004)


def test_a_stranger_cannot_take_a_talking_callers_media() -> None:
    s = session()
    caller = RtpSender(8, ssrc=5, sequence=100, timestamp=0)
    stranger = RtpSender(8, ssrc=666, sequence=1, timestamp=0)
    for _ in range(50):  # the caller talks, one packet a frame; the stranger blasts
        s.receive(caller.packet(b"\x01" * 160), NATTED)
        for _ in range(40):
            s.receive(stranger.packet(b"\x66" * 160), STRANGER)
        assert s.pop_frame() in (b"\x01" * 160, LOST, None)
        out = s.next_packet(b"\xd5" * 160)
        assert out is not None and out[1] == NATTED
    assert s.unlatched == 50 * 40
    # its key presses are not the caller's either
    for data in dtmf_packets(stranger, "9", 101, duration_ms=60):
        assert s.receive(data, STRANGER) == []


def test_a_caller_whose_address_moved_is_followed_after_a_burst() -> None:
    s = session()
    caller = RtpSender(8, ssrc=5, sequence=100, timestamp=0)
    for _ in range(5):
        s.receive(caller.packet(b"\x01" * 160), NATTED)
        s.pop_frame()
    moved = ("203.0.113.9", 50000)  # the NAT binding changed: same stream, new port
    played = []
    for i in range(30):
        s.receive(caller.packet(bytes([i]) * 160), moved)
        played.append(s.pop_frame())
        target = s.next_packet(b"\xd5" * 160)
        assert target is not None
    assert s.remote_addr == moved  # followed: its first LATCH_BURST - 1 packets dropped
    assert s.unlatched == LATCH_BURST - 1
    heard = {f[0] for f in played if isinstance(f, bytes) and f[0] != 1}
    assert heard and min(heard) == LATCH_BURST - 1, heard
    # a new stream from the same address (a transfer, music on hold) is taken at once
    other = RtpSender(8, ssrc=9, sequence=7, timestamp=0)
    s.receive(other.packet(b"\x02" * 160), moved)
    assert s.unlatched == LATCH_BURST - 1 and s.remote_addr == moved


def test_the_sdp_address_is_always_the_callers() -> None:
    s = session()
    s.receive(RtpSender(8, ssrc=1).packet(b"\x01" * 160), STRANGER)  # raced the caller
    assert s.remote_addr == STRANGER
    s.receive(RtpSender(8, ssrc=2).packet(b"\x02" * 160), CALLER_RTP)
    assert s.remote_addr == CALLER_RTP
