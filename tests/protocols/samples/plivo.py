"""Messages of Plivo's stream as its documentation shows them: for the protocol tests
and the fuzzer."""

from __future__ import annotations

from tests.protocols._util import b64

SID = "87654321-4321-4321-4321-cba987654321"
CALL = "12345678-1234-1234-1234-123456789abc"


def start_event(encoding: str = "audio/x-mulaw", rate: int = 8000) -> dict:
    return {
        "event": "start",
        "sequenceNumber": 1,
        "start": {
            "callId": CALL,
            "streamId": SID,
            "accountId": "MAXXXXXXXXXXXXXXXXXX",
            "tracks": ["inbound"],
            "mediaFormat": {"encoding": encoding, "sampleRate": rate},
        },
        "extra_headers": "userId=12345;sessionId=abc-xyz",
    }


def media(n: int, payload: bytes) -> dict:
    return {
        "event": "media",
        "sequenceNumber": n + 1,
        "streamId": SID,
        "media": {
            "track": "inbound",
            "timestamp": "1705312200000",
            "chunk": n,
            "payload": b64(payload),
        },
        "extra_headers": "userId=12345;sessionId=abc-xyz",
    }
