"""Messages of Telnyx's stream as its documentation shows them: for the protocol tests
and the fuzzer."""

from __future__ import annotations

from tests.protocols._util import b64

SID = "32DE0DEA-53CB-4B21-89A4-9E1819C043BC"
CCID = "v2:T02llQxIyaRkhfRKxgAP8nY511EhFLizdvdUKJiSw8d6A9BborherQ"


def start_frame(encoding: str = "PCMU", rate: int = 8000) -> dict:
    return {
        "event": "start",
        "sequence_number": "1",
        "stream_id": SID,
        "start": {
            "user_id": "3E6F995F-85F7-4705-9741-53B116D28237",
            "call_control_id": CCID,
            "call_session_id": "ff55a038-6f5d-11ef-9692-02420aeffb1f",
            "from": "+13122010094",
            "to": "+13122123456",
            "tags": ["TAG1"],
            "client_state": "aGF2ZSBhIG5pY2UgZGF5ID1d",
            "custom_parameters": {"customer_id": "customer_123"},
            "media_format": {"encoding": encoding, "sample_rate": rate, "channels": 1},
        },
    }


def media(n: int, payload: bytes, track: str = "inbound") -> dict:
    return {
        "event": "media",
        "sequence_number": str(n + 1),
        "media": {
            "track": track,
            "chunk": str(n),
            "timestamp": str(20 * n),
            "payload": b64(payload),
        },
        "stream_id": SID,
    }
