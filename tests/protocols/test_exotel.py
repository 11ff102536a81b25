"""Exotel Voicebot stream: documented events, outbound media/mark/clear, bad input."""

from __future__ import annotations

import json

import pytest

from gateway.protocols import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    CommandError,
    Connected,
    DtmfIn,
    ExotelProtocol,
    MarkPlayed,
    ProtocolError,
    SendAudio,
    SendMark,
    exotel_url_answer,
)
from media.codecs import WireFormat
from tests.protocols._util import b64, j, parsed, tone
from tests.protocols.samples.exotel import CALL, SID, media, start_event


def test_documented_sequence_parses_to_events() -> None:
    wire = WireFormat("l16", 8000)
    chunks = [tone(wire, ms=100, start=800 * i) for i in range(3)]
    proto = ExotelProtocol()
    events = proto.receive_text(j({"event": "connected"}))
    events += proto.receive_text(j(start_event()))
    for i, chunk in enumerate(chunks, 1):
        events += proto.receive_text(j(media(i, chunk)))
    events += proto.receive_text(
        j(
            {
                "event": "dtmf",
                "sequence_number": "7",
                "stream_sid": SID,
                "dtmf": {"digit": "5", "duration": "100"},
            }
        )
    )
    events += proto.receive_text(
        j({"event": "mark", "sequence_number": "15", "stream_sid": SID, "mark": {"name": "m"}})
    )
    events += proto.receive_text(
        j(
            {
                "event": "stop",
                "sequence_number": "16",
                "stream_sid": SID,
                "stop": {"call_sid": CALL, "account_sid": "AC0123", "reason": "callended"},
            }
        )
    )
    assert events == [
        Connected(),
        CallStarted(
            call_id=CALL,
            stream_id=SID,
            wire=wire,
            params={"key1": "value1"},
            from_number="+919876543210",
            to_number="+918047491899",
        ),
        *[AudioIn(c) for c in chunks],
        DtmfIn("5"),
        MarkPlayed("m"),
        CallEnded("callended"),
    ]


def test_sample_rate_from_start_or_from_the_applet_url() -> None:
    (ev,) = ExotelProtocol().receive_text(j(start_event(rate="16000")))
    assert isinstance(ev, CallStarted) and ev.wire == WireFormat("l16", 16000)
    no_format = start_event()
    del no_format["start"]["media_format"]
    (ev,) = ExotelProtocol(sample_rate=24000).receive_text(j(no_format))
    assert isinstance(ev, CallStarted) and ev.wire == WireFormat("l16", 24000)
    with pytest.raises(ValueError):
        ExotelProtocol(sample_rate=11025)


def test_commands_render_to_the_documented_json() -> None:
    proto = ExotelProtocol()
    proto.receive_text(j(start_event()))
    audio = tone(WireFormat("l16", 8000), ms=100)
    assert len(audio) % 320 == 0  # Exotel wants multiples of 320 bytes
    assert parsed(proto.send(SendAudio(audio))) == [
        {"event": "media", "stream_sid": SID, "media": {"payload": b64(audio)}}
    ]
    assert parsed(proto.send(SendMark("m"))) == [
        {"event": "mark", "stream_sid": SID, "mark": {"name": "m"}}
    ]
    assert parsed(proto.send(ClearAudio())) == [{"event": "clear", "stream_sid": SID}]
    with pytest.raises(CommandError):
        proto.send(SendAudio(b"\x00" * 321))


@pytest.mark.parametrize(
    ("before", "message", "match"),
    [
        ([], j(media(1, b"\x00\x00")), "before 'start'"),
        ([], j(start_event(rate="11025")), "sample rate"),
        ([], j(start_event(rate="٣٣")), "sample rate"),
        ([], j(start_event(encoding="audio/ogg")), "unsupported encoding"),
        ([], j({"event": "stop"}), "before 'start'"),
        ([start_event()], j(media(1, b"\x00\x00\x00")), "whole 16-bit samples"),
        ([start_event()], j({**media(1, b""), "stream_sid": 5}), "does not match"),
    ],
)
def test_bad_input_raises_protocol_error(before: list[dict], message: str, match: str) -> None:
    proto = ExotelProtocol()
    for msg in before:
        proto.receive_text(j(msg))
    with pytest.raises(ProtocolError, match=match):
        proto.receive_text(message)


def test_url_answer() -> None:
    assert json.loads(exotel_url_answer("wss://gw.example.com/exotel/stream?a=1")) == {
        "url": "wss://gw.example.com/exotel/stream?a=1"
    }
