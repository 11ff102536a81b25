"""Vonage WebSockets: websocket:connected, binary L16 frames both ways, dtmf/notify/clear, NCCO."""

from __future__ import annotations

import json

import pytest

from gateway.protocols import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Cleared,
    CommandError,
    DtmfIn,
    Hangup,
    Ignored,
    MarkPlayed,
    ProtocolError,
    SendAudio,
    SendMark,
    VonageProtocol,
    vonage_ncco,
)
from media.codecs import WireFormat
from tests.protocols._util import j, tone
from tests.protocols.samples.vonage import UUID, connected


def test_documented_sequence_parses_to_events() -> None:
    wire = WireFormat("l16", 16000)
    frames = [tone(wire, start=320 * i) for i in range(3)]
    assert {len(f) for f in frames} == {640}
    proto = VonageProtocol()
    events = proto.receive_text(j(connected()))
    for frame in frames:
        events += proto.receive_bytes(frame)
    events += proto.receive_text(j({"event": "websocket:dtmf", "digit": "5", "duration": 260}))
    events += proto.receive_text(j({"event": "websocket:notify", "payload": {"mark": "utt-1"}}))
    events += proto.receive_text(j({"event": "websocket:cleared"}))
    events += proto.receive_text(j({"event": "websocket:notify", "payload": {"other": 1}}))
    assert events[0] == CallStarted(
        call_id=UUID,
        stream_id=UUID,
        wire=wire,
        params={"uuid": UUID, "from": "447700900000", "to": "447700900001", "app": '{"tier":2}'},
        from_number="447700900000",
        to_number="447700900001",
    )
    assert events[1:4] == [AudioIn(f) for f in frames]
    assert events[4:7] == [DtmfIn("5"), MarkPlayed("utt-1"), Cleared()]
    assert isinstance(events[7], Ignored)
    assert proto.closed() == [CallEnded("disconnected")]


def test_outbound_audio_is_split_into_20ms_binary_frames() -> None:
    proto = VonageProtocol()
    proto.receive_text(j(connected(8000)))
    audio = tone(WireFormat("l16", 8000), ms=60)
    out = proto.send(SendAudio(audio))
    assert [len(m) for m in out] == [320, 320, 320]
    assert all(isinstance(m, bytes) for m in out) and b"".join(out) == audio  # type: ignore[arg-type]
    assert [json.loads(m) for m in proto.send(SendMark("utt-1"))] == [
        {"action": "notify", "payload": {"mark": "utt-1"}}
    ]
    assert [json.loads(m) for m in proto.send(ClearAudio())] == [{"action": "clear"}]
    with pytest.raises(CommandError, match="20 ms"):
        proto.send(SendAudio(audio[:100]))
    assert proto.send(Hangup()) == [] and proto.closed() == []


@pytest.mark.parametrize(
    ("before", "message", "match"),
    [
        ([], j({"event": "websocket:dtmf", "digit": "1"}), "before 'websocket:connected'"),
        ([], j({"event": "websocket:connected", "content-type": "audio/opus"}), "content-type"),
        ([], j({"event": "websocket:connected", "content-type": "audio/l16;rate=11025"}), "rate"),
        ([], j({"event": "websocket:connected"}), "content-type"),
        ([connected()], j(connected()), "second"),
        ([connected()], j({"event": "websocket:dtmf", "digit": "55"}), "DTMF"),
        ([connected()], "{", "malformed JSON"),
    ],
)
def test_bad_text_raises_protocol_error(before: list[dict], message: str, match: str) -> None:
    proto = VonageProtocol()
    for msg in before:
        proto.receive_text(j(msg))
    with pytest.raises(ProtocolError, match=match):
        proto.receive_text(message)


def test_bad_binary_raises_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="before"):
        VonageProtocol().receive_bytes(b"\x00" * 640)
    proto = VonageProtocol(max_message=4096)
    proto.receive_text(j(connected()))
    with pytest.raises(ProtocolError, match="whole 16-bit samples"):
        proto.receive_bytes(b"\x00" * 641)
    with pytest.raises(ProtocolError, match="exceeds"):
        proto.receive_bytes(b"\x00" * 5000)
    with pytest.raises(ProtocolError, match="binary"):
        proto.receive_bytes("text")  # type: ignore[arg-type]


def test_ncco() -> None:
    ncco = vonage_ncco("wss://gw.example.com/vonage/stream", headers={"uuid": UUID, "from": "4477"})
    assert ncco == [
        {
            "action": "connect",
            "endpoint": [
                {
                    "type": "websocket",
                    "uri": "wss://gw.example.com/vonage/stream",
                    "content-type": "audio/l16;rate=16000",
                    "headers": {"uuid": UUID, "from": "4477"},
                }
            ],
        }
    ]
    assert vonage_ncco("wss://h/s", sample_rate=8000)[0]["endpoint"][0]["content-type"] == (
        "audio/l16;rate=8000"
    )
    with pytest.raises(ValueError):
        vonage_ncco("wss://h/s", sample_rate=44100)


def test_audio_in_flight_after_our_hangup_is_ignored() -> None:
    proto = VonageProtocol()
    proto.receive_text(j(connected()))
    proto.send(Hangup())
    assert isinstance(proto.receive_bytes(b"\x00" * 640)[0], Ignored)
    assert isinstance(proto.receive_text(j({"event": "websocket:cleared"}))[0], Ignored)
