"""Plivo audio streams: documented events, playAudio/checkpoint/clearAudio, bad input, XML."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from gateway.protocols import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Cleared,
    DtmfIn,
    Hangup,
    MarkPlayed,
    PlivoProtocol,
    ProtocolError,
    SendAudio,
    SendMark,
    plivo_xml,
)
from media.codecs import WireFormat
from tests.protocols._util import b64, j, parsed, tone
from tests.protocols.samples.plivo import CALL, SID, media, start_event


def test_documented_sequence_parses_to_events() -> None:
    wire = WireFormat("pcmu", 8000)
    frames = [tone(wire, start=160 * i) for i in range(3)]
    proto = PlivoProtocol()
    events = proto.receive_text(j(start_event()))
    for i, frame in enumerate(frames, 1):
        events += proto.receive_text(j(media(i, frame)))
    events += proto.receive_text(j({"event": "dtmf", "streamId": SID, "dtmf": {"digit": "5"}}))
    events += proto.receive_text(j({"event": "playedStream", "streamId": SID, "name": "greeting"}))
    events += proto.receive_text(j({"event": "played", "streamId": SID, "name": "old-name"}))
    events += proto.receive_text(j({"sequenceNumber": 0, "event": "clearedAudio", "streamId": SID}))
    assert events == [
        CallStarted(
            call_id=CALL,
            stream_id=SID,
            wire=wire,
            params={"userId": "12345", "sessionId": "abc-xyz"},
        ),
        *[AudioIn(f) for f in frames],
        DtmfIn("5"),
        MarkPlayed("greeting"),
        MarkPlayed("old-name"),
        Cleared(),
    ]
    assert proto.closed() == [CallEnded("disconnected")]


def test_l16_16k_stream_and_commands_render_to_the_documented_json() -> None:
    proto = PlivoProtocol()
    (started,) = proto.receive_text(j(start_event("audio/x-l16", 16000)))
    assert isinstance(started, CallStarted) and started.wire == WireFormat("l16", 16000)
    audio = tone(started.wire, ms=20)
    assert len(audio) == 640
    assert parsed(proto.send(SendAudio(audio))) == [
        {
            "event": "playAudio",
            "media": {"contentType": "audio/x-l16", "sampleRate": 16000, "payload": b64(audio)},
        }
    ]
    assert parsed(proto.send(SendMark("utt-3"))) == [
        {"event": "checkpoint", "streamId": SID, "name": "utt-3"}
    ]
    assert parsed(proto.send(ClearAudio())) == [{"event": "clearAudio", "streamId": SID}]
    assert proto.send(Hangup()) == []


def test_mulaw_play_audio_content_type() -> None:
    proto = PlivoProtocol()
    proto.receive_text(j(start_event()))
    (msg,) = parsed(proto.send(SendAudio(b"\x7f" * 160)))
    assert msg["media"]["contentType"] == "audio/x-mulaw" and msg["media"]["sampleRate"] == 8000


@pytest.mark.parametrize(
    ("before", "message", "match"),
    [
        ([], j(media(1, b"\x01")), "before 'start'"),
        ([], j({"event": "playedStream", "name": "x"}), "before 'start'"),
        ([], j(start_event("audio/x-l16", 44100)), "sample rate"),
        ([], j(start_event("audio/flac")), "unsupported encoding"),
        ([], j({**start_event(), "extra_headers": 7}), "extra_headers"),
        ([start_event()], j({**media(1, b""), "media": {"payload": "a"}}), "base64"),
        ([start_event()], j({"event": "playedStream", "streamId": SID}), "name"),
        ([start_event()], j({"event": "dtmf", "dtmf": {"digit": None}}), "DTMF"),
    ],
)
def test_bad_input_raises_protocol_error(before: list[dict], message: str, match: str) -> None:
    proto = PlivoProtocol()
    for msg in before:
        proto.receive_text(j(msg))
    with pytest.raises(ProtocolError, match=match):
        proto.receive_text(message)


def test_answer_xml() -> None:
    root = ET.fromstring(
        plivo_xml("wss://gw.example.com/plivo/stream", extra_headers={"callId": "abc123"})
    )
    (stream,) = list(root)
    assert root.tag == "Response" and stream.tag == "Stream"
    assert stream.text == "wss://gw.example.com/plivo/stream"
    assert stream.attrib == {
        "bidirectional": "true",
        "keepCallAlive": "true",
        "contentType": "audio/x-mulaw;rate=8000",
        "extraHeaders": "callId=abc123",
    }
    with pytest.raises(ValueError, match="A-Za-z0-9"):
        plivo_xml("wss://h/s", extra_headers={"call-id": "x"})
    with pytest.raises(ValueError, match="contentType"):
        plivo_xml("wss://h/s", content_type="audio/x-mulaw;rate=16000")
