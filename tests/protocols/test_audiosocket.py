"""Asterisk AudioSocket: framing, every split point of a TCP stream, encoding, bad input."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.protocols import (
    AudioIn,
    AudioSocketProtocol,
    CallEnded,
    CallStarted,
    ClearAudio,
    DtmfIn,
    Hangup,
    Ignored,
    ProtocolError,
    SendAudio,
    SendMark,
)
from gateway.protocols.audiosocket import encode_message
from media.codecs import WireFormat
from tests.protocols._util import tone

CALL = uuid.UUID("40325ec2-5efd-4bd3-805f-53576e581d13")
SLIN8 = WireFormat("l16", 8000)
FRAMES = [tone(SLIN8, start=160 * i) for i in range(4)]


def call_stream() -> bytes:
    """UUID, four audio frames with a DTMF digit between, an unknown kind, then hang-up."""
    return b"".join(
        [
            encode_message(0x01, CALL.bytes),
            encode_message(0x10, FRAMES[0]),
            encode_message(0x10, FRAMES[1]),
            encode_message(0x03, b"9"),
            encode_message(0x10, FRAMES[2]),
            encode_message(0x02, b"\x01\x00\x00\x00\x00\x00"),
            encode_message(0x10, FRAMES[3]),
            encode_message(0x00),
        ]
    )


EXPECTED = [
    CallStarted(call_id=str(CALL), stream_id=str(CALL), wire=SLIN8),
    AudioIn(FRAMES[0]),
    AudioIn(FRAMES[1]),
    DtmfIn("9"),
    AudioIn(FRAMES[2]),
    Ignored("audiosocket: message kind 0x02"),
    AudioIn(FRAMES[3]),
    CallEnded("hangup"),
]


def test_whole_stream_parses_to_events() -> None:
    assert AudioSocketProtocol().feed(call_stream()) == EXPECTED


def test_every_split_point_gives_the_same_events() -> None:
    data = call_stream()
    for cut in range(len(data) + 1):
        proto = AudioSocketProtocol()
        assert proto.feed(data[:cut]) + proto.feed(data[cut:]) == EXPECTED, cut


def test_byte_by_byte_gives_the_same_events() -> None:
    data = call_stream()
    proto = AudioSocketProtocol()
    events = []
    for i in range(len(data)):
        events += proto.feed(data[i : i + 1])
    assert events == EXPECTED


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, len(call_stream())), max_size=12))
def test_any_fragmentation_gives_the_same_events(cuts: list[int]) -> None:
    data = call_stream()
    bounds = [0, *sorted(cuts), len(data)]
    proto = AudioSocketProtocol()
    events = []
    for a, b in zip(bounds, bounds[1:], strict=False):
        events += proto.feed(data[a:b])
    assert events == EXPECTED


def test_error_message_ends_the_call_with_the_asterisk_reason() -> None:
    proto = AudioSocketProtocol()
    proto.feed(encode_message(0x01, CALL.bytes))
    assert proto.feed(encode_message(0xFF, b"\x02")) == [
        CallEnded("error 0x02: frame forwarding error")
    ]
    assert proto.closed() == []


def test_16k_kind_and_encoding() -> None:
    wire = WireFormat("l16", 16000)
    proto = AudioSocketProtocol(sample_rate=16000)
    frame = tone(wire)
    events = proto.feed(encode_message(0x01, CALL.bytes) + encode_message(0x12, frame))
    assert events == [
        CallStarted(call_id=str(CALL), stream_id=str(CALL), wire=wire),
        AudioIn(frame),
    ]
    assert proto.encode(SendAudio(frame)) == b"\x12\x02\x80" + frame
    with pytest.raises(ProtocolError, match="8000 Hz on a call set up for 16000"):
        proto.feed(encode_message(0x10, FRAMES[0]))


def test_encode_commands() -> None:
    proto = AudioSocketProtocol()
    audio = FRAMES[0] + FRAMES[1]
    assert proto.encode(SendAudio(audio)) == (
        b"\x10\x01\x40" + FRAMES[0] + b"\x10\x01\x40" + FRAMES[1]
    )
    assert proto.encode(ClearAudio()) == b""
    assert proto.encode(SendMark("m")) == b""
    assert proto.encode(Hangup()) == b"\x00\x00\x00"
    assert AudioSocketProtocol.supports_marks is False
    # what we encode, a peer parses back
    peer = AudioSocketProtocol()
    assert peer.feed(encode_message(0x01, CALL.bytes) + proto.encode(SendAudio(audio)))[1:] == [
        AudioIn(FRAMES[0]),
        AudioIn(FRAMES[1]),
    ]


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (encode_message(0x10, FRAMES[0]), "before the UUID"),
        (encode_message(0x03, b"1"), "before the UUID"),
        (encode_message(0x01, b"short"), "not 16"),
        (encode_message(0x01, CALL.bytes) * 2, "second UUID"),
        (encode_message(0x01, CALL.bytes) + encode_message(0x10, b"\x00" * 3), "whole samples"),
        (encode_message(0x01, CALL.bytes) + encode_message(0x03, b"x"), "not a DTMF digit"),
        (encode_message(0x01, CALL.bytes) + encode_message(0x03, b"12"), "not 1"),
        (encode_message(0x01, CALL.bytes) + encode_message(0x00) + b"\x10", "after the call ended"),
    ],
)
def test_bad_streams_raise_protocol_error(data: bytes, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        AudioSocketProtocol().feed(data)


def test_half_message_at_close_is_dropped() -> None:
    proto = AudioSocketProtocol()
    proto.feed(encode_message(0x01, CALL.bytes) + encode_message(0x10, FRAMES[0])[:100])
    assert proto.closed() == [CallEnded("disconnected")]


def test_data_in_flight_after_our_hangup_is_ignored() -> None:
    proto = AudioSocketProtocol()
    proto.feed(encode_message(0x01, CALL.bytes))
    assert proto.encode(Hangup()) == b"\x00\x00\x00"
    (event,) = proto.feed(encode_message(0x10, FRAMES[0]))
    assert isinstance(event, Ignored)
    assert proto.closed() == []
