"""Messages of Twilio's stream as its documentation shows them: for the protocol tests
and the fuzzer."""

from __future__ import annotations

from gateway.protocols import TwilioProtocol
from media.codecs import WireFormat
from tests.protocols._util import b64, j

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
CALL = "CA0123456789abcdef0123456789abcdef"
ULAW = WireFormat("pcmu", 8000)

CONNECTED = {"event": "connected", "protocol": "Call", "version": "1.0.0"}
START = {
    "event": "start",
    "sequenceNumber": "1",
    "start": {
        "accountSid": "AC0123",
        "streamSid": SID,
        "callSid": CALL,
        "tracks": ["inbound"],
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
        "customParameters": {"caller": "+15550001111", "agent": "demo"},
    },
    "streamSid": SID,
}


def media(n: int, payload: bytes, track: str = "inbound") -> dict:
    return {
        "event": "media",
        "sequenceNumber": str(n + 2),
        "media": {
            "track": track,
            "chunk": str(n),
            "timestamp": str(20 * n),
            "payload": b64(payload),
        },
        "streamSid": SID,
    }


def started() -> TwilioProtocol:
    proto = TwilioProtocol()
    proto.receive_text(j(CONNECTED))
    proto.receive_text(j(START))
    return proto
