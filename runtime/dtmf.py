"""The telephone keypad's sixteen DTMF keys, in RFC 4733 event-code order (0-15): the one
definition that the SDK's events, the tone generator and the wire protocols all use."""

DTMF_KEYS = "0123456789*#ABCD"
