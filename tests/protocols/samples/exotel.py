"""Messages of Exotel's stream as its documentation shows them: for the protocol tests
and the fuzzer."""

from __future__ import annotations

from tests.protocols._util import b64

SID = "MZ0123456789abcdef0123456789ab"
CALL = "CA0123456789abcdef0123456789ab"


def start_event(rate: str = "8000", encoding: str = "audio/x-raw") -> dict:
    return {
        "event": "start",
        "sequence_number": "1",
        "stream_sid": SID,
        "start": {
            "stream_sid": SID,
            "call_sid": CALL,
            "account_sid": "AC0123",
            "from": "+919876543210",
            "to": "+918047491899",
            "custom_parameters": {"key1": "value1"},
            "media_format": {"encoding": encoding, "sample_rate": rate, "bit_rate": "16"},
        },
    }


def media(n: int, payload: bytes) -> dict:
    return {
        "event": "media",
        "sequence_number": str(n + 1),
        "stream_sid": SID,
        "media": {"chunk": str(n), "timestamp": str(100 * n), "payload": b64(payload)},
    }
