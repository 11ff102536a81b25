"""The keypad's keys are defined once (runtime.dtmf) and every layer uses that definition."""

from agent import events
from gateway.protocols import common
from gateway.sip import dtmf as sip_dtmf
from media import dtmf_tones
from runtime.dtmf import DTMF_KEYS


def test_one_definition_of_the_keys():
    assert events.DTMF_KEYS is DTMF_KEYS
    assert dtmf_tones.DTMF_KEYS is DTMF_KEYS
    assert sip_dtmf.DIGITS is DTMF_KEYS  # in RFC 4733 event-code order
    assert common.DTMF_DIGITS == frozenset(DTMF_KEYS)
    assert DTMF_KEYS.index("*") == 10 and DTMF_KEYS.index("D") == 15
