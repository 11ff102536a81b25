"""Twilio Media Streams: a documented message sequence, outbound JSON, bad input, TwiML."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from twilio.twiml.voice_response import Connect, Stream, VoiceResponse

from gateway.protocols import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    CommandError,
    Connected,
    DtmfIn,
    Hangup,
    Ignored,
    MarkPlayed,
    ProtocolError,
    SendAudio,
    SendMark,
    TwilioProtocol,
    twilio_twiml,
)
from tests.protocols._util import b64, j, parsed, tone
from tests.protocols.samples.twilio import CALL, CONNECTED, SID, START, ULAW, media, started


def test_documented_sequence_parses_to_events() -> None:
    frames = [tone(ULAW, start=160 * i) for i in range(3)]
    proto = TwilioProtocol()
    events = []
    events += proto.receive_text(j(CONNECTED))
    events += proto.receive_text(j(START))
    for i, frame in enumerate(frames, 1):
        events += proto.receive_text(j(media(i, frame)))
    events += proto.receive_text(
        j(
            {
                "event": "dtmf",
                "streamSid": SID,
                "sequenceNumber": "6",
                "dtmf": {"track": "inbound_track", "digit": "7"},
            }
        )
    )
    events += proto.receive_text(
        j({"event": "mark", "sequenceNumber": "7", "streamSid": SID, "mark": {"name": "utt-1"}})
    )
    events += proto.receive_text(
        j(
            {
                "event": "stop",
                "sequenceNumber": "8",
                "streamSid": SID,
                "stop": {"accountSid": "AC0123", "callSid": CALL},
            }
        )
    )
    assert events == [
        Connected("1.0.0"),
        CallStarted(
            call_id=CALL,
            stream_id=SID,
            wire=ULAW,
            params={"caller": "+15550001111", "agent": "demo"},
        ),
        *[AudioIn(f) for f in frames],
        DtmfIn("7"),
        MarkPlayed("utt-1"),
        CallEnded("stop"),
    ]
    assert proto.ended and proto.closed() == []


def test_outbound_track_audio_is_ignored_not_delivered() -> None:
    proto = started()
    (event,) = proto.receive_text(j(media(1, tone(ULAW), track="outbound")))
    assert isinstance(event, Ignored)


def test_commands_render_to_the_documented_json() -> None:
    proto = started()
    audio = tone(ULAW, ms=40)
    assert parsed(proto.send(SendAudio(audio))) == [
        {"event": "media", "streamSid": SID, "media": {"payload": b64(audio)}}
    ]
    assert parsed(proto.send(SendMark("utt-1"))) == [
        {"event": "mark", "streamSid": SID, "mark": {"name": "utt-1"}}
    ]
    assert parsed(proto.send(ClearAudio())) == [{"event": "clear", "streamSid": SID}]
    assert proto.send(Hangup()) == []
    assert proto.closed() == []


def test_commands_before_start_or_not_whole_frames_are_refused() -> None:
    with pytest.raises(CommandError, match="before 'start'"):
        TwilioProtocol().send(SendAudio(b"\xff" * 160))
    proto = started()
    with pytest.raises(CommandError, match="20 ms"):
        proto.send(SendAudio(b"\xff" * 100))
    with pytest.raises(CommandError, match="20 ms"):
        proto.send(SendAudio(b""))


def test_disconnect_without_stop_ends_the_call() -> None:
    proto = started()
    assert proto.closed() == [CallEnded("disconnected")]
    assert proto.closed() == []


@pytest.mark.parametrize(
    ("before", "message", "match"),
    [
        ([], "not json", "malformed JSON"),
        ([], "[1, 2]", "expected a JSON object"),
        ([], j({"no": "event"}), "no string 'event'"),
        ([], j(media(1, b"\xff" * 160)), "before 'start'"),
        ([], j({"event": "dtmf", "dtmf": {"digit": "1"}}), "before 'start'"),
        ([], j({"event": "start", "start": {"callSid": CALL}}), "streamSid"),
        ([], j({"event": "start"}), "missing object 'start'"),
        ([START], j(START), "second 'start'"),
        ([START], j(CONNECTED), "'connected' after 'start'"),
        ([START], j({**media(1, b""), "media": {"payload": "@@@not base64@@@"}}), "base64"),
        ([START], j({**media(1, b""), "media": {"payload": 12}}), "base64"),
        ([START], j({"event": "media", "streamSid": SID}), "missing object 'media'"),
        ([START], j({**media(1, b"\x01"), "streamSid": "MZother"}), "does not match"),
        ([START], j({"event": "dtmf", "dtmf": {"digit": "x"}}), "not a DTMF digit"),
        ([START], j({"event": "mark", "mark": {}}), "missing string 'name'"),
        ([START], "x" * 300_000, "exceeds the limit"),
        ([START], "[" * 100_000, "malformed JSON|exceeds"),
        ([START, {"event": "stop", "stop": {}}], j(media(1, b"\x01")), "after the stream ended"),
    ],
)
def test_bad_input_raises_protocol_error(before: list[dict], message: str, match: str) -> None:
    proto = TwilioProtocol()
    for msg in before:
        proto.receive_text(j(msg))
    with pytest.raises(ProtocolError, match=match):
        proto.receive_text(message)


def test_deeply_nested_json_within_the_size_limit_is_a_protocol_error() -> None:
    proto = TwilioProtocol(max_message=1_000_000)
    with pytest.raises(ProtocolError, match="malformed JSON"):
        proto.receive_text("[" * 200_000 + "]" * 200_000)


def test_unsupported_media_format_is_refused() -> None:
    start = json.loads(j(START))
    start["start"]["mediaFormat"] = {"encoding": "audio/opus", "sampleRate": 48000}
    with pytest.raises(ProtocolError, match="unsupported encoding"):
        TwilioProtocol().receive_text(j(start))


@pytest.mark.parametrize("rate", [1000, 16000, 48000, 192000, "7999", 0])
@pytest.mark.parametrize("encoding", ["audio/x-mulaw", "audio/x-alaw"])
def test_g711_only_at_8000_hz(encoding: str, rate: object) -> None:
    start = json.loads(j(START))
    start["start"]["mediaFormat"] = {"encoding": encoding, "sampleRate": rate, "channels": 1}
    with pytest.raises(ProtocolError, match="sample rate"):
        TwilioProtocol().receive_text(j(start))


def test_binary_message_is_refused() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        started().receive_bytes(b"\xff" * 160)


def test_unknown_event_is_ignored() -> None:
    (event,) = started().receive_text(j({"event": "future-thing", "streamSid": SID}))
    assert isinstance(event, Ignored)


# ------------------------------------------------------------------ TwiML


def _tree(elem: ET.Element) -> tuple:
    return (elem.tag, dict(elem.attrib), (elem.text or "").strip(), [_tree(c) for c in elem])


def test_twiml_matches_the_twilio_library_builder() -> None:
    url = "wss://gw.example.com/twilio/stream"
    params = {"From": "+15550001111", "To": "+15550002222", "note": "a&b <c> \"d\" 'e' ü"}
    ours = twilio_twiml(url, params)

    response = VoiceResponse()
    connect = Connect()
    stream = Stream(url=url)
    for name, value in params.items():
        stream.parameter(name=name, value=value)
    connect.append(stream)
    response.append(connect)
    theirs = str(response)

    assert ours.startswith('<?xml version="1.0" encoding="UTF-8"?>')
    assert _tree(ET.fromstring(ours)) == _tree(ET.fromstring(theirs))
    root = ET.fromstring(ours)
    got = {p.get("name"): p.get("value") for p in root.iter("Parameter")}
    assert got == params


def test_twiml_without_parameters_and_bad_characters() -> None:
    root = ET.fromstring(twilio_twiml("wss://h/twilio/stream"))
    assert _tree(root) == (
        "Response",
        {},
        "",
        [("Connect", {}, "", [("Stream", {"url": "wss://h/twilio/stream"}, "", [])])],
    )
    # parameters come from the webhook's request: control characters are left out
    root = ET.fromstring(twilio_twiml("wss://h/s", {"x\x00": "bell\x07\x1b[0m\x85\ud800"}))
    assert [(p.get("name"), p.get("value")) for p in root.iter("Parameter")] == [("x", "bell[0m")]
    with pytest.raises(ValueError, match="XML 1.0"):  # our own URL is never rewritten
        twilio_twiml("wss://h/s\x07")


def test_messages_in_flight_after_our_hangup_are_ignored() -> None:
    proto = started()
    assert proto.send(Hangup()) == []
    (event,) = proto.receive_text(j(media(1, tone(ULAW))))
    assert isinstance(event, Ignored)
    assert proto.closed() == []
