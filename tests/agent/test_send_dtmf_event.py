"""`agent.send_dtmf`: our extension event for pressing keys towards the far end."""

import pytest
from pydantic import ValidationError

from agent.events import (
    EventType,
    SDKAgentSendDtmfEvent,
    SendDtmf,
    all_event_types,
    decode_event,
    encode_event,
)


def test_round_trip_and_names():
    assert "agent.send_dtmf" in all_event_types()
    assert EventType.AGENT_SEND_DTMF == SDKAgentSendDtmfEvent.type == "agent.send_dtmf"
    assert SendDtmf is SDKAgentSendDtmfEvent
    event = SDKAgentSendDtmfEvent(digits="0123456789*#abcD")
    assert event.digits == "0123456789*#ABCD"
    assert encode_event(event) == '{"type":"agent.send_dtmf","digits":"0123456789*#ABCD"}'
    assert decode_event(encode_event(event)) == event
    assert decode_event({"type": "agent.send.dtmf", "digits": "1"}).type == "agent.send_dtmf"


def test_bad_digits_say_which_keys():
    with pytest.raises(ValidationError, match=r"not DTMF keys: 'xE!' \(keys are 0-9 \* # A-D\)"):
        SDKAgentSendDtmfEvent(digits="12xE!x#")
    with pytest.raises(ValueError, match="invalid agent.send_dtmf event: digits: .*' '"):
        decode_event({"type": "agent.send_dtmf", "digits": "1 2"})
    with pytest.raises(ValueError, match="no digits to send"):
        decode_event({"type": "agent.send_dtmf", "digits": ""})
    with pytest.raises(ValueError, match="missing field 'digits'"):
        decode_event({"type": "agent.send_dtmf"})
