"""Far-end clients for the end-to-end tests, one module per provider (`twilio`, `telnyx`,
`plivo`, `exotel`, `vonage`, `webclient` for `/ws`, `audiosocket` for Asterisk AudioSocket
over TCP) on what they share (`base`: the codecs, the far end's playback model and
`CallClient`). Everything is importable from here, as before the split."""

from __future__ import annotations

from tests.kit.clients.audiosocket import AudioSocketClient
from tests.kit.clients.base import (
    FRAME_S,
    OPEN,
    AgentFrame,
    CallClient,
    Control,
    FarEnd,
    b64,
    bytes_per_frame,
    decode,
    encode,
    frame_slots,
)
from tests.kit.clients.exotel import ExotelClient
from tests.kit.clients.plivo import PlivoClient
from tests.kit.clients.telnyx import TelnyxClient
from tests.kit.clients.twilio import TwilioClient
from tests.kit.clients.vonage import VonageClient
from tests.kit.clients.webclient import WebClient

__all__ = ["CLIENTS", "FRAME_S", "OPEN", "AgentFrame", "AudioSocketClient", "CallClient",
           "Control", "ExotelClient", "FarEnd", "PlivoClient", "TelnyxClient", "TwilioClient",
           "VonageClient", "WebClient", "b64", "bytes_per_frame", "decode", "encode",
           "frame_slots"]

CLIENTS: dict[str, type[CallClient]] = {
    c.provider: c
    for c in (TwilioClient, TelnyxClient, PlivoClient, ExotelClient, VonageClient, WebClient,
              AudioSocketClient)
}

