"""Sans-I/O wire protocols of the telephony providers: text/bytes in, typed events out;
typed commands in, text/bytes out. No sockets, tasks or clocks (DESIGN.md rule 1).

WebSocket providers share one shape: `receive_text(str)`, `receive_bytes(bytes)`,
`send(cmd) -> list[str | bytes]`, `closed()`; AudioSocket (TCP) has `feed(bytes)` and
`encode(cmd) -> bytes`. Bad input raises `ProtocolError`.
"""

from __future__ import annotations

from gateway.protocols.audiosocket import AudioSocketProtocol
from gateway.protocols.common import (
    AudioIn,
    CallEnded,
    CallStarted,
    ClearAudio,
    Cleared,
    Command,
    CommandError,
    Connected,
    DtmfIn,
    Event,
    Hangup,
    Ignored,
    MarkPlayed,
    ProtocolError,
    ProviderError,
    SendAudio,
    SendMark,
)
from gateway.protocols.exotel import EXOTEL, ExotelProtocol, exotel_url_answer
from gateway.protocols.plivo import PLIVO, PlivoProtocol, plivo_xml
from gateway.protocols.telnyx import TELNYX, TelnyxProtocol, telnyx_texml
from gateway.protocols.twilio import TWILIO, TwilioProtocol, twilio_twiml
from gateway.protocols.twilio_signature import twilio_signature, validate_twilio_signature
from gateway.protocols.vonage import VONAGE, VonageProtocol, vonage_ncco
from gateway.protocols.webhooks import StreamProvider

# The registry of provider media streams: `gateway.routes` serves each one's webhooks and
# stream, `gateway.route_auth` lists those without a secret. Adding a provider is its
# protocol module (with its `StreamProvider`) plus a line here.
WEBSOCKET_PROTOCOLS: dict[str, StreamProvider] = {
    "twilio": TWILIO,
    "telnyx": TELNYX,
    "plivo": PLIVO,
    "exotel": EXOTEL,
    "vonage": VONAGE,
}

__all__ = [
    "WEBSOCKET_PROTOCOLS",
    "AudioIn",
    "AudioSocketProtocol",
    "CallEnded",
    "CallStarted",
    "ClearAudio",
    "Cleared",
    "Command",
    "CommandError",
    "Connected",
    "DtmfIn",
    "Event",
    "ExotelProtocol",
    "Hangup",
    "Ignored",
    "MarkPlayed",
    "PlivoProtocol",
    "ProtocolError",
    "ProviderError",
    "SendAudio",
    "SendMark",
    "StreamProvider",
    "TelnyxProtocol",
    "TwilioProtocol",
    "VonageProtocol",
    "exotel_url_answer",
    "plivo_xml",
    "telnyx_texml",
    "twilio_signature",
    "twilio_twiml",
    "validate_twilio_signature",
    "vonage_ncco",
]
