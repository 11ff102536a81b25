"""Messages of Vonage's stream as its documentation shows them: for the protocol tests
and the fuzzer."""

from __future__ import annotations

UUID = "63f61863-4a51-4f6b-86e1-46edebcf9356"


def connected(rate: int = 16000) -> dict:
    return {
        "event": "websocket:connected",
        "content-type": f"audio/l16;rate={rate}",
        "uuid": UUID,
        "from": "447700900000",
        "to": "447700900001",
        "app": {"tier": 2},
    }
