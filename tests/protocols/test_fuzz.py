"""Hypothesis on every parser: whatever arrives, a protocol yields events or raises
ProtocolError (never another exception); whatever we ask, `send` yields messages or raises
CommandError."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.protocols import (
    AudioSocketProtocol,
    ClearAudio,
    CommandError,
    ExotelProtocol,
    Hangup,
    PlivoProtocol,
    ProtocolError,
    SendAudio,
    SendMark,
    TelnyxProtocol,
    TwilioProtocol,
    VonageProtocol,
)
from gateway.protocols.audiosocket import encode_message
from tests.protocols import test_exotel, test_plivo, test_telnyx, test_twilio, test_vonage
from tests.protocols._util import EVENT_TYPES, j

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A valid conversation per provider: text items are JSON messages, bytes are binary frames.
VALID: dict[str, tuple[Callable[[], Any], list[dict | bytes]]] = {
    "twilio": (
        TwilioProtocol,
        [
            test_twilio.CONNECTED,
            test_twilio.START,
            test_twilio.media(1, b"\xff" * 160),
            {"event": "dtmf", "streamSid": test_twilio.SID, "dtmf": {"digit": "1"}},
            {"event": "mark", "streamSid": test_twilio.SID, "mark": {"name": "m"}},
            {"event": "stop", "streamSid": test_twilio.SID, "stop": {"callSid": "CA"}},
        ],
    ),
    "telnyx": (
        TelnyxProtocol,
        [
            {"event": "connected", "version": "1.0.0"},
            test_telnyx.start_frame(),
            test_telnyx.media(1, b"\xff" * 160),
            {"event": "dtmf", "dtmf": {"digit": "2"}},
            {"event": "mark", "mark": {"name": "m"}},
            {"event": "error", "payload": {"code": 1, "title": "t"}},
            {"event": "stop", "stream_id": test_telnyx.SID, "stop": {}},
        ],
    ),
    "plivo": (
        PlivoProtocol,
        [
            test_plivo.start_event(),
            test_plivo.media(1, b"\xff" * 160),
            {"event": "dtmf", "dtmf": {"digit": "3"}},
            {"event": "playedStream", "streamId": test_plivo.SID, "name": "m"},
            {"event": "clearedAudio", "streamId": test_plivo.SID},
        ],
    ),
    "exotel": (
        ExotelProtocol,
        [
            {"event": "connected"},
            test_exotel.start_event(),
            test_exotel.media(1, b"\x00" * 320),
            {"event": "dtmf", "dtmf": {"digit": "4"}},
            {"event": "mark", "mark": {"name": "m"}},
            {"event": "stop", "stop": {"reason": "stopped"}},
        ],
    ),
    "vonage": (
        VonageProtocol,
        [
            test_vonage.connected(),
            b"\x00\x01" * 320,
            {"event": "websocket:dtmf", "digit": "5", "duration": 100},
            {"event": "websocket:notify", "payload": {"mark": "m"}},
            {"event": "websocket:cleared"},
        ],
    ),
}
PROVIDERS = sorted(VALID)
EVENT_NAMES = sorted(
    {m["event"] for _, msgs in VALID.values() for m in msgs if isinstance(m, dict)}
    | {"start", "media", "stop", "played", "websocket:connected"}
)
FIELD_NAMES = sorted(
    {
        "event",
        "start",
        "media",
        "dtmf",
        "mark",
        "stop",
        "payload",
        "name",
        "digit",
        "streamSid",
        "stream_id",
        "streamId",
        "stream_sid",
        "callSid",
        "call_control_id",
        "callId",
        "call_sid",
        "mediaFormat",
        "media_format",
        "encoding",
        "sampleRate",
        "sample_rate",
        "channels",
        "customParameters",
        "custom_parameters",
        "extra_headers",
        "track",
        "content-type",
        "uuid",
    }
)

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(["", "inbound", "outbound", "audio/x-mulaw", "8000", "AAAA", "//8=", "#"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=25,
)
jsonish = st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=6).flatmap(
    lambda d: st.sampled_from(EVENT_NAMES).map(lambda e: {**d, "event": e}) | st.just(d)
)


def deliver(proto: Any, item: dict | bytes | str) -> list:
    if isinstance(item, bytes):
        return proto.receive_bytes(item)
    return proto.receive_text(item if isinstance(item, str) else j(item))


def _check_message(exc: Exception) -> None:
    """Error text ends up in logs and WebSocket close reasons: short and ASCII."""
    text = str(exc)
    assert text and text.isascii() and len(text) <= 200, text


def outcome(proto: Any, item: dict | bytes | str) -> list | None:
    """Events, or None when the protocol refused the input with ProtocolError."""
    try:
        events = deliver(proto, item)
    except ProtocolError as exc:
        _check_message(exc)
        return None
    assert isinstance(events, list)
    assert all(isinstance(e, EVENT_TYPES) for e in events), events
    return events


def primed(name: str, prefix: int) -> Any:
    factory, msgs = VALID[name]
    proto = factory()
    for item in msgs[:prefix]:
        outcome(proto, item)
    return proto


@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(prefix=st.integers(0, 3), text=st.text(max_size=300))
def test_arbitrary_text(name: str, prefix: int, text: str) -> None:
    outcome(primed(name, prefix), text)


@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(prefix=st.integers(0, 3), data=st.binary(max_size=700))
def test_arbitrary_bytes(name: str, prefix: int, data: bytes) -> None:
    outcome(primed(name, prefix), data)


@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(prefix=st.integers(0, 3), msg=jsonish)
def test_jsonish_objects(name: str, prefix: int, msg: dict) -> None:
    outcome(primed(name, prefix), msg)


def _paths(node: dict, prefix: tuple = ()) -> list[tuple]:
    """Every key path inside a message, inner objects included."""
    out = []
    for key, child in node.items():
        out.append((*prefix, key))
        if isinstance(child, dict):
            out += _paths(child, (*prefix, key))
    return out


def _mutate(data: st.DataObject, msg: dict) -> dict:
    """Delete one field somewhere inside a valid message, or replace its value (often with a
    string, the type most fields hold)."""
    msg = copy.deepcopy(msg)
    *parents, key = data.draw(st.sampled_from(_paths(msg)))
    node = msg
    for parent in parents:
        node = node[parent]
    op = data.draw(st.integers(0, 7))
    if op == 0:
        del node[key]
    elif op <= 3:
        node[key] = data.draw(st.text(max_size=12))
    else:
        node[key] = data.draw(json_values)
    return msg


CASES = [(name, i) for name in PROVIDERS for i in range(len(VALID[name][1]))]


@pytest.mark.parametrize(("name", "index"), CASES)
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_messages(name: str, index: int, data: st.DataObject) -> None:
    """Each message of a valid conversation, in its place, with one field broken."""
    proto = primed(name, index)
    target = VALID[name][1][index]
    if isinstance(target, bytes):
        mutated: dict | bytes = data.draw(st.binary(max_size=1000))
    else:
        mutated = _mutate(data, target)
    outcome(proto, mutated)


@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(data=st.data())
def test_random_sequences_keep_failing_cleanly(name: str, data: st.DataObject) -> None:
    """Messages in any order, including after errors and after the end."""
    factory, msgs = VALID[name]
    proto = factory()
    items = data.draw(
        st.lists(st.sampled_from(msgs) | jsonish | st.binary(max_size=64), max_size=12)
    )
    for item in items:
        outcome(proto, item)
    assert isinstance(proto.closed(), list)


@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(
    prefix=st.integers(0, 3),
    commands=st.lists(
        st.one_of(
            st.binary(max_size=1300).map(SendAudio),
            st.text(max_size=20).map(SendMark),
            st.just(ClearAudio()),
            st.just(Hangup()),
            st.integers().map(SendMark),  # a wrong type from a bug upstream
        ),
        max_size=6,
    ),
)
def test_send_yields_messages_or_command_error(name: str, prefix: int, commands: list) -> None:
    proto = primed(name, prefix)
    for cmd in commands:
        try:
            out = proto.send(cmd)
        except CommandError:
            continue
        assert isinstance(out, list) and all(isinstance(m, str | bytes) for m in out)
        for m in out:
            if isinstance(m, str):
                assert isinstance(json.loads(m), dict)


# ------------------------------------------------------------------ AudioSocket

UUID_MSG = encode_message(0x01, bytes(range(16)))
messages = st.tuples(
    st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x18, 0xFE, 0xFF]),
    st.binary(max_size=400),
).map(lambda kp: encode_message(*kp))


def feed_outcome(proto: AudioSocketProtocol, data: bytes) -> list | None:
    try:
        events = proto.feed(data)
    except ProtocolError as exc:
        _check_message(exc)
        return None
    assert all(isinstance(e, EVENT_TYPES) for e in events), events
    return events


@FUZZ
@given(with_uuid=st.booleans(), chunks=st.lists(st.binary(max_size=200), max_size=10))
def test_audiosocket_arbitrary_bytes(with_uuid: bool, chunks: list[bytes]) -> None:
    proto = AudioSocketProtocol()
    if with_uuid:
        feed_outcome(proto, UUID_MSG)
    for chunk in chunks:
        feed_outcome(proto, chunk)
    assert isinstance(proto.closed(), list)


@FUZZ
@given(
    rate=st.sampled_from([8000, 16000]),
    stream=st.tuples(st.sampled_from([UUID_MSG, b""]), st.lists(messages, max_size=10)).map(
        lambda um: um[0] + b"".join(um[1])
    ),
    cuts=st.lists(st.integers(0, 5000), max_size=8),
)
def test_audiosocket_framed_garbage_any_fragmentation(
    rate: int, stream: bytes, cuts: list[int]
) -> None:
    proto = AudioSocketProtocol(sample_rate=rate)
    bounds = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        if feed_outcome(proto, stream[a:b]) is None:
            break


@FUZZ
@given(
    commands=st.lists(
        st.one_of(st.binary(max_size=2000).map(SendAudio), st.just(Hangup())), max_size=4
    )
)
def test_audiosocket_encode(commands: list) -> None:
    proto = AudioSocketProtocol()
    for cmd in commands:
        try:
            out = proto.encode(cmd)
        except CommandError:
            continue
        assert isinstance(out, bytes)
