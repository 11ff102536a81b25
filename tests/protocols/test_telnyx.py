"""Telnyx media streaming: documented frames to events, outbound JSON, bad input, TeXML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.protocols import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Connected,
    DtmfIn,
    Hangup,
    Ignored,
    MarkPlayed,
    ProtocolError,
    ProviderError,
    SendAudio,
    SendMark,
    TelnyxProtocol,
    telnyx_texml,
)
from media.codecs import WireFormat
from tests.protocols._util import b64, j, parsed, tone
from tests.protocols.samples.telnyx import CCID, SID, media, start_frame


def test_documented_sequence_parses_to_events() -> None:
    wire = WireFormat("pcmu", 8000)
    frames = [tone(wire, start=160 * i) for i in range(3)]
    proto = TelnyxProtocol()
    events = proto.receive_text(j({"event": "connected", "version": "1.0.0"}))
    events += proto.receive_text(j(start_frame()))
    for i, frame in enumerate(frames, 1):
        events += proto.receive_text(j(media(i, frame)))
    events += proto.receive_text(j(media(4, frames[0], track="outbound")))
    events += proto.receive_text(
        j(
            {
                "event": "dtmf",
                "stream_id": SID,
                "occurred_at": "2024-01-01T00:00:00Z",
                "dtmf": {"digit": "#"},
            }
        )
    )
    events += proto.receive_text(j({"event": "mark", "stream_id": SID, "mark": {"name": "m1"}}))
    events += proto.receive_text(
        j(
            {
                "event": "error",
                "stream_id": SID,
                "payload": {"code": 100002, "title": "unknown error", "detail": "oops"},
            }
        )
    )
    events += proto.receive_text(
        j(
            {
                "event": "stop",
                "sequence_number": "9",
                "stream_id": SID,
                "stop": {"user_id": "u", "call_control_id": CCID},
            }
        )
    )
    assert events[0] == Connected("1.0.0")
    assert events[1] == CallStarted(
        call_id=CCID,
        stream_id=SID,
        wire=wire,
        params={"customer_id": "customer_123"},
        from_number="+13122010094",
        to_number="+13122123456",
    )
    assert events[2:5] == [AudioIn(f) for f in frames]
    assert isinstance(events[5], Ignored)
    assert events[6:8] == [DtmfIn("#"), MarkPlayed("m1")]
    assert events[8] == ProviderError("telnyx: 100002 unknown error oops")
    assert events[9] == CallEnded("stop")


@pytest.mark.parametrize(
    ("encoding", "rate", "wire"),
    [
        ("PCMA", 8000, WireFormat("pcma", 8000)),
        ("L16", 16000, WireFormat("l16be", 16000)),
        ("pcmu", 8000, WireFormat("pcmu", 8000)),
    ],
)
def test_media_formats(encoding: str, rate: int, wire: WireFormat) -> None:
    (event,) = TelnyxProtocol().receive_text(j(start_frame(encoding, rate)))
    assert isinstance(event, CallStarted) and event.wire == wire


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("PCMU", 1000), ("PCMU", 16000), ("PCMA", 192000), ("L16", 8000), ("L16", 44100),
     ("pcmu", 48000)],
)
def test_each_codec_only_at_its_documented_rate(encoding: str, rate: int) -> None:
    with pytest.raises(ProtocolError, match="sample rate"):
        TelnyxProtocol().receive_text(j(start_frame(encoding, rate)))


def test_custom_parameters_as_name_value_list() -> None:
    frame = start_frame()
    frame["start"]["custom_parameters"] = [{"name": "a", "value": "1"}, {"name": "b", "value": 2}]
    (event,) = TelnyxProtocol().receive_text(j(frame))
    assert isinstance(event, CallStarted) and event.params == {"a": "1", "b": "2"}


def test_commands_render_to_the_documented_json() -> None:
    proto = TelnyxProtocol()
    proto.receive_text(j(start_frame()))
    audio = tone(WireFormat("pcmu", 8000), ms=60)
    assert parsed(proto.send(SendAudio(audio))) == [
        {"event": "media", "media": {"payload": b64(audio)}}
    ]
    assert parsed(proto.send(SendMark("m1"))) == [{"event": "mark", "mark": {"name": "m1"}}]
    assert parsed(proto.send(ClearAudio())) == [{"event": "clear"}]
    assert proto.send(Hangup()) == []


@pytest.mark.parametrize(
    ("before", "message", "match"),
    [
        ([], j(media(1, b"\x01")), "before 'start'"),
        ([], j({"event": "start", "start": {"call_control_id": CCID}}), "stream_id"),
        ([], j(start_frame("OPUS", 48000)), "unsupported encoding"),
        (
            [],
            j({**start_frame(), "start": {**start_frame()["start"], "media_format": 5}}),
            "object",
        ),
        ([start_frame()], j({**media(1, b""), "media": {"payload": "%%%"}}), "base64"),
        ([start_frame("L16", 16000)], j(media(1, b"\x01\x02\x03")), "whole 16-bit samples"),
        ([start_frame()], j({**media(1, b"\x01"), "stream_id": "other"}), "does not match"),
        ([start_frame()], j({"event": "dtmf", "dtmf": {"digit": "11"}}), "not a DTMF digit"),
        ([start_frame()], j({"event": "dtmf"}), "missing object 'dtmf'"),
    ],
)
def test_bad_input_raises_protocol_error(before: list[dict], message: str, match: str) -> None:
    proto = TelnyxProtocol()
    for msg in before:
        proto.receive_text(j(msg))
    with pytest.raises(ProtocolError, match=match):
        proto.receive_text(message)


def test_texml_answer() -> None:
    root = ET.fromstring(telnyx_texml("wss://gw.example.com/telnyx/stream?x=1&y=2"))
    assert root.tag == "Response"
    (connect,) = list(root)
    (stream,) = list(connect)
    assert (connect.tag, stream.tag) == ("Connect", "Stream")
    assert stream.attrib == {
        "url": "wss://gw.example.com/telnyx/stream?x=1&y=2",
        "bidirectionalMode": "rtp",
        "bidirectionalCodec": "PCMU",
        "bidirectionalSamplingRate": "8000",
    }
    with pytest.raises(ValueError, match="codec"):
        telnyx_texml("wss://h/s", codec="MP3")
