"""Hypothesis on every parser: whatever arrives, a protocol yields events or raises
ProtocolError (never another exception); whatever we ask, `send` yields messages or raises
CommandError."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.events import (
    MAX_JSON_DEPTH,
    all_event_types,
    decode_event,
    encode_event,
    event_to_dict,
    parse_json,
    too_deep,
)
from gateway.protocols import (
    AudioSocketProtocol,
    ClearAudio,
    CommandError,
    ExotelProtocol,
    Hangup,
    MarkPlayed,
    PlivoProtocol,
    ProtocolError,
    SendAudio,
    SendMark,
    TelnyxProtocol,
    TwilioProtocol,
    VonageProtocol,
)
from gateway.protocols.audiosocket import encode_message
from gateway.protocols.webclient import WebClientProtocol
from gateway.transports.media_stream import parse_mark
from gateway.transports.webrtc import parse_offer
from media.playout import PlayoutBuffer
from tests.protocols._util import EVENT_TYPES, j
from tests.protocols.samples import exotel, plivo, telnyx, twilio, vonage

FUZZ = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# A valid conversation per provider: text items are JSON messages, bytes are binary frames.
VALID: dict[str, tuple[Callable[[], Any], list[dict | bytes]]] = {
    "twilio": (
        TwilioProtocol,
        [
            twilio.CONNECTED,
            twilio.START,
            twilio.media(1, b"\xff" * 160),
            {"event": "dtmf", "streamSid": twilio.SID, "dtmf": {"digit": "1"}},
            {"event": "mark", "streamSid": twilio.SID, "mark": {"name": "m"}},
            {"event": "stop", "streamSid": twilio.SID, "stop": {"callSid": "CA"}},
        ],
    ),
    "telnyx": (
        TelnyxProtocol,
        [
            {"event": "connected", "version": "1.0.0"},
            telnyx.start_frame(),
            telnyx.media(1, b"\xff" * 160),
            {"event": "dtmf", "dtmf": {"digit": "2"}},
            {"event": "mark", "mark": {"name": "m"}},
            {"event": "error", "payload": {"code": 1, "title": "t"}},
            {"event": "stop", "stream_id": telnyx.SID, "stop": {}},
        ],
    ),
    "plivo": (
        PlivoProtocol,
        [
            plivo.start_event(),
            plivo.media(1, b"\xff" * 160),
            {"event": "dtmf", "dtmf": {"digit": "3"}},
            {"event": "playedStream", "streamId": plivo.SID, "name": "m"},
            {"event": "clearedAudio", "streamId": plivo.SID},
        ],
    ),
    "exotel": (
        ExotelProtocol,
        [
            {"event": "connected"},
            exotel.start_event(),
            exotel.media(1, b"\x00" * 320),
            {"event": "dtmf", "dtmf": {"digit": "4"}},
            {"event": "mark", "mark": {"name": "m"}},
            {"event": "stop", "stop": {"reason": "stopped"}},
        ],
    ),
    "vonage": (
        VonageProtocol,
        [
            vonage.connected(),
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


# ------------------------------------------------------------------ deep nesting, non-ASCII
# `/ws` (web clients and Atoms peers), the Atoms events, `/webrtc/offer`, far-end marks.


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    """JSON text nested from a few to a hundred thousand levels: arrays, objects or both,
    whole or cut short, alone or as a field of an otherwise valid message."""
    depth = draw(st.sampled_from([1, 63, 64, 65, 500, 999, 1000, 1001, 5000, 100_000])
                 | st.integers(1, 3000))
    kind = draw(st.sampled_from(["array", "object", "mixed"]))
    opens = {"array": "[", "object": '{"k":', "mixed": '[{"k":'}[kind]
    closes = {"array": "]", "object": "}", "mixed": "}]"}[kind]
    reps = depth if kind != "mixed" else max(depth // 2, 1)
    inner = draw(st.sampled_from(["1", '"x"', "null", "[]", "{}"]))
    text = opens * reps + inner + (closes * reps if draw(st.booleans()) else "")
    wrapper = draw(st.sampled_from([
        "{}", '{{"type": "system.user.joined", "x": {}}}', '{{"type": "text", "text": "a", "x": {}}}',
        '{{"type": "start", "context": {}}}', '{{"type": "agent.speak", "text": {}}}',
        '{{"type": "system.init", "session_context": {{"initial_variables": {}}}}}',
        '{{"type": "offer", "sdp": "v=0", "context": {}}}',
    ]))
    return text if wrapper == "{}" else wrapper.format(text)


lone_surrogates = st.integers(0xD800, 0xDFFF).map(lambda c: f'"\\u{c:04x}"')
non_ascii_text = st.text(alphabet=st.characters(min_codepoint=0x80), min_size=1, max_size=40)
wild_text = st.text(max_size=200) | non_ascii_text | st.text(
    alphabet=st.characters(max_codepoint=0x1F), max_size=20)


def _wire_message(exc: Exception) -> None:
    """An error's text goes into a close reason, an `agent.error` and a log line: ASCII,
    no control characters, bounded."""
    text = str(exc)
    assert text and text.isascii() and text.isprintable() and len(text) <= 400, text


def web_outcome(proto: WebClientProtocol, item: str | bytes) -> list | None:
    try:
        out = proto.receive_bytes(item) if isinstance(item, bytes) else proto.receive_text(item)
    except ProtocolError as exc:
        _wire_message(exc)
        return None
    assert isinstance(out, list)
    return out


WEB_TYPES = ["start", "text", "dtmf", "hangup", "stop", *all_event_types()]
web_jsonish = st.dictionaries(
    st.sampled_from(["type", "text", "digit", "sample_rate", "context", "pcm", "role",
                     "content", "messages", "session_context", "version"]) | non_ascii_text,
    json_values | non_ascii_text | lone_surrogates.map(json.loads), max_size=6,
).flatmap(lambda d: st.sampled_from(WEB_TYPES).map(lambda t: {**d, "type": t}) | st.just(d))


@FUZZ
@given(started=st.booleans(), item=wild_text | deeply_nested() | st.binary(max_size=400))
def test_web_client_any_message(started: bool, item: str | bytes) -> None:
    proto = WebClientProtocol()
    if started:
        web_outcome(proto, json.dumps({"type": "start", "sample_rate": 16000}))
    web_outcome(proto, item)


@FUZZ
@given(started=st.booleans(), msg=web_jsonish)
def test_web_client_jsonish_messages(started: bool, msg: dict) -> None:
    proto = WebClientProtocol()
    if started:
        web_outcome(proto, json.dumps({"type": "start"}))
    try:
        text = json.dumps(msg, allow_nan=True)
    except (ValueError, UnicodeEncodeError):
        return
    web_outcome(proto, text)
    web_outcome(proto, text.encode("utf-8", "surrogatepass"))


@FUZZ
@given(text=deeply_nested())
def test_web_client_refuses_deep_nesting_with_a_reason(text: str) -> None:
    try:
        depth_ok = not too_deep(json.loads(text))
    except (ValueError, RecursionError):
        depth_ok = False
    out = web_outcome(WebClientProtocol(), text)
    if out is None and not depth_ok:
        return
    assert depth_ok  # a message nested deeper than the limit is never taken


@FUZZ
@given(data=wild_text | deeply_nested() | st.binary(max_size=300)
       | web_jsonish.map(lambda m: json.dumps(m)))
def test_atoms_events_decode_or_raise_value_error(data: str | bytes) -> None:
    for item in (data, data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data):
        try:
            event = decode_event(item)
        except ValueError as exc:  # (never RecursionError, TypeError, UnicodeError ...)
            _wire_message(exc)
            continue
        assert event.type in all_event_types()
        assert not too_deep(event_to_dict(event), MAX_JSON_DEPTH + 2)
        encode_event(event)  # what was taken can be sent on


@FUZZ
@given(body=wild_text | deeply_nested() | st.binary(max_size=300) | web_jsonish.map(
    lambda m: json.dumps({**m, "type": "offer", "sdp": "v=0\r\nm=audio 9 RTP/AVP 0\r\n"})))
def test_webrtc_offer_bodies_parse_or_raise_value_error(body: str | bytes) -> None:
    data = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
    try:
        sdp, context = parse_offer(parse_json(data))  # as the route does, then HTTP 400
    except ValueError:
        return
    assert sdp.startswith("v=0") and isinstance(context, dict) and not too_deep(context)


marks = (wild_text | st.builds(lambda u, ms: f"{u}@{ms}", st.text(max_size=20), st.one_of(
    st.sampled_from(["inf", "-inf", "nan", "1e999", "-5", "0x10", " 7", "", "\u0661", "+3",
                     "1_000", "9" * 400, "3.5", "1e3"]),
    st.integers(-(2**70), 2**70).map(str), st.floats().map(str))))


@FUZZ
@given(name=marks, pushed=st.integers(0, 3))
def test_mark_names_confirm_or_are_ignored(name: str, pushed: int) -> None:
    playout = PlayoutBuffer(far_end_confirms=True)
    for i in range(pushed):
        playout.push(f"u{i}", np.zeros(320 * (i + 1), dtype=np.int16), final=True)
    while playout.pop() is not None:
        pass
    mark = parse_mark(name)
    if mark is not None:
        uid, ms = mark
        assert "@" + str(int(ms)) in name and 0 <= ms < 1e9
        playout.confirm(uid, ms)
    for uid in ("u0", name, name.rpartition("@")[0]):
        for ms in (float("inf"), float("-inf"), float("nan"), 1e308, -1.0):
            playout.confirm(uid, ms)  # never an OverflowError or ValueError


@pytest.mark.parametrize("name", ["twilio", "telnyx", "exotel", "vonage", "plivo"])
@FUZZ
@given(mark=marks)
def test_mark_messages_of_every_provider(name: str, mark: str) -> None:
    proto = primed(name, 2)
    message = {
        "twilio": {"event": "mark", "streamSid": twilio.SID, "mark": {"name": mark}},
        "telnyx": {"event": "mark", "mark": {"name": mark}},
        "exotel": {"event": "mark", "mark": {"name": mark}},
        "vonage": {"event": "websocket:notify", "payload": {"mark": mark}},
        "plivo": {"event": "playedStream", "streamId": plivo.SID, "name": mark},
    }[name]
    try:
        text = json.dumps(message)
    except UnicodeEncodeError:
        return
    for event in outcome(proto, text) or []:
        if isinstance(event, MarkPlayed):
            parse_mark(event.name)  # None or a position, never an exception


@pytest.mark.parametrize("name", PROVIDERS)
@FUZZ
@given(params=deeply_nested())
def test_deeply_nested_start_parameters(name: str, params: str) -> None:
    """Custom parameters (Twilio, Telnyx, Exotel), extra headers (Plivo) or connected
    fields (Vonage) nested deeply: a ProtocolError, never a RecursionError."""
    factory, msgs = VALID[name]
    proto = factory()
    for item in msgs[:1] if name not in ("plivo", "vonage") else []:
        outcome(proto, item)
    start = copy.deepcopy(msgs[0 if name in ("plivo", "vonage") else 1])
    assert isinstance(start, dict)
    target = start.get("start", start) if name != "vonage" else start
    key = {"twilio": "customParameters", "telnyx": "custom_parameters",
           "exotel": "custom_parameters", "plivo": "extra_headers", "vonage": "x"}[name]
    target[key] = "__deep__"
    outcome(proto, j(start).replace('"__deep__"', params, 1))
