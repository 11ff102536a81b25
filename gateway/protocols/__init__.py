"""Sans-I/O wire protocols of the telephony providers: text/bytes in, typed events out;
typed commands in, text/bytes out. No sockets, tasks or clocks (DESIGN.md rule 1).

WebSocket providers share one shape: `receive_text(str)`, `receive_bytes(bytes)`,
`send(cmd) -> list[str | bytes]`, `closed()`; AudioSocket (TCP) has `feed(bytes)` and
`encode(cmd) -> bytes`. Bad input raises `ProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from gateway.protocols.exotel import ExotelProtocol, exotel_url_answer
from gateway.protocols.plivo import PlivoProtocol, plivo_xml
from gateway.protocols.telnyx import TelnyxProtocol, telnyx_texml
from gateway.protocols.twilio import TwilioProtocol, twilio_twiml
from gateway.protocols.twilio_signature import twilio_signature, validate_twilio_signature
from gateway.protocols.vonage import VonageProtocol, vonage_ncco


@dataclass(frozen=True)
class StreamProvider:
    """A telephony provider whose calls arrive as a WebSocket media stream: served at
    `/{name}/stream`, answered at `/{name}/{answer}`, secured by the setting `secret`."""

    protocol: Callable[..., Any]  # `protocol(max_message=...)`: a fresh sans-I/O protocol
    answer: str  # the leaf of its answer webhook's path ("voice", "answer")
    secret: str  # the `Settings` field with its secret (`gateway.route_auth`)
    more: tuple[str, ...] = ()  # other webhook leaves it has ("event")

    def paths(self, name: str) -> list[str]:
        return [f"/{name}/{leaf}" for leaf in (self.answer, *self.more, "stream")]


# The registry of provider media streams: `gateway.routes` serves a stream route for each
# (and its answer webhook), `gateway.route_auth` lists those without a secret. Adding a
# provider is its protocol module plus a line here (and its webhook's answer in routes).
WEBSOCKET_PROTOCOLS: dict[str, StreamProvider] = {
    "twilio": StreamProvider(TwilioProtocol, "voice", "twilio_auth_token"),
    "telnyx": StreamProvider(TelnyxProtocol, "voice", "telnyx_public_key"),
    "plivo": StreamProvider(PlivoProtocol, "answer", "plivo_auth_token"),
    "exotel": StreamProvider(ExotelProtocol, "answer", "exotel_token"),
    "vonage": StreamProvider(VonageProtocol, "answer", "vonage_signature_secret",
                             ("event",)),
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
