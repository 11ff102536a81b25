import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.events import (
    SDKAgentAudioEvent,
    SDKAgentEvent,
    SDKAgentTransferConversationEvent,
    SDKSystemInitEvent,
    all_event_types,
    canonical_type,
    decode_event,
    encode_event,
    event_class,
    event_to_dict,
)

REQUIRED = {
    "system.dtmf": {"digit": "5"},
    "system.audio.chunk": {"pcm": "AAEC", "sample_rate": 8000},
    "system.output_agent.update_settings": {"settings": {"interruptible": False}},
    "agent.error": {"message": "boom", "severity": "fatal", "payload": {"k": 1}},
    "agent.log": {"name": "stats", "payload": {"n": 2}},
    "agent.transcript.update": {"role": "user", "content": "hi"},
    "agent.llm.response.chunk": {"text": "Hello"},
    "agent.speak": {"text": "Hi there"},
    "agent.audio": {"pcm": "AAEC", "sample_rate": 24000},
    "agent.transfer_call": {"transfer_call_number": "+15550100"},
}

CATALOG = [
    "system.init", "system.user.joined", "system.user.left", "system.user.started_speaking",
    "system.user.stopped_speaking", "system.control.interrupt", "agent.transcript.update",
    "system.llm.request", "system.dtmf", "system.audio.chunk", "agent.ready", "agent.error",
    "agent.log", "system.output_agent.update_settings", "agent.llm.response.start",
    "agent.llm.response.chunk", "agent.llm.response.end", "agent.speak", "agent.audio",
    "agent.control.interrupt", "agent.control.mute_user", "agent.control.unmute_user",
    "agent.end_call", "agent.transfer_call",
]


def test_catalog_is_complete():
    assert set(CATALOG) <= set(all_event_types())


@pytest.mark.parametrize("name", CATALOG)
def test_every_type_round_trips(name):
    event = decode_event({"type": name, **REQUIRED.get(name, {})})
    assert event.type == name
    text = encode_event(event)
    again = decode_event(text)
    assert type(again) is type(event)
    assert again == event
    assert json.loads(text)["type"] == name


def test_unknown_type_and_missing_field_name_the_problem():
    with pytest.raises(ValueError, match="system.nope"):
        decode_event({"type": "system.nope"})
    with pytest.raises(ValueError, match="'digit'"):
        decode_event({"type": "system.dtmf"})
    with pytest.raises(ValueError, match="type"):
        decode_event({"digit": "1"})
    with pytest.raises(ValueError, match="malformed"):
        decode_event("{not json")
    with pytest.raises(ValueError, match="base64"):
        decode_event({"type": "agent.audio", "pcm": "***"})
    with pytest.raises(ValueError, match="JSON object"):
        decode_event("[1, 2]")


def test_underscore_aliases():
    assert canonical_type("system.user_joined") == "system.user.joined"
    assert canonical_type("system.user_left") == "system.user.left"
    assert canonical_type("system.user_started_speaking") == "system.user.started_speaking"
    assert canonical_type("system.user_stopped_speaking") == "system.user.stopped_speaking"
    assert event_class("system.user_joined").type == "system.user.joined"
    assert decode_event({"type": "system.user_joined"}).type == "system.user.joined"


def test_audio_is_base64_in_json_and_bytes_in_python():
    ev = SDKAgentAudioEvent(pcm=b"\x00\x01\xff", sample_rate=8000)
    d = event_to_dict(ev)
    assert d["pcm"] == "AAH/"
    assert decode_event(d).pcm == b"\x00\x01\xff"


def test_user_defined_event_type():
    class OrderPlaced(SDKAgentEvent, type="app.order.placed"):
        order_id: str

    ev = decode_event({"type": "app.order.placed", "order_id": "42"})
    assert isinstance(ev, OrderPlaced) and ev.order_id == "42"
    assert decode_event(encode_event(ev)) == ev


def test_init_carries_caller_and_transfer_defaults():
    init = decode_event({
        "type": "system.init", "version": "1.0",
        "session_context": {"initial_variables": {"name": "Ann"}, "conversation_type": "chat",
                            "caller": {"user_number": "+1555", "call_id": "c1"}},
        "timestamp": "2026-01-01T00:00:00",  # the published SDK sends one; it is ignored
    })
    assert isinstance(init, SDKSystemInitEvent)
    assert init.session_context.caller.user_number == "+1555"
    t = SDKAgentTransferConversationEvent(transfer_call_number="+1")
    assert event_to_dict(t)["transfer_options"]["type"] == "cold_transfer"


@given(st.dictionaries(st.text(max_size=10), st.text(max_size=10) | st.integers(), max_size=5),
       st.sampled_from(CATALOG + ["x.y", ""]))
def test_decoder_only_raises_value_error(fields, name):
    try:
        decode_event({**fields, "type": name})
    except ValueError:
        pass
