"""The JSON media streams' 50-a-second paths give what the general ones give:
`receive_audio` is `receive_text` with the audio's payload bare, and `audio_text` is the one
message of `send(SendAudio(...))`, for every JSON provider, with the same errors."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.protocols import ExotelProtocol, PlivoProtocol, TelnyxProtocol, TwilioProtocol
from gateway.protocols.common import AudioIn, CommandError, ProtocolError, SendAudio
from gateway.protocols.jsonstream import JsonMediaStream
from tests.protocols._util import j
from tests.protocols.samples import exotel, plivo, telnyx, twilio

# provider -> (a new protocol, its start message, a media message of a payload)
PROVIDERS: dict[str, tuple[Any, dict[str, Any], Any]] = {
    "twilio": (TwilioProtocol, twilio.START, twilio.media),
    "telnyx": (TelnyxProtocol, telnyx.start_frame(), telnyx.media),
    "plivo": (PlivoProtocol, plivo.start_event(), plivo.media),
    "exotel": (ExotelProtocol, exotel.start_event(), exotel.media),
}


def started(provider: str) -> JsonMediaStream:
    make, start, _media = PROVIDERS[provider]
    proto = make()
    proto.receive_text(j(start))
    return proto


@pytest.mark.parametrize("provider", PROVIDERS)
def test_audio_comes_bare_and_everything_else_as_receive_text_gives_it(provider: str) -> None:
    media = PROVIDERS[provider][2]
    fast, slow = started(provider), started(provider)
    payload = bytes(range(160))
    assert fast.receive_audio(j(media(1, payload))) == payload
    assert slow.receive_text(j(media(1, payload))) == [AudioIn(payload)]
    empty = j(media(2, b""))
    assert fast.receive_audio(empty) == slow.receive_text(empty)  # [Ignored(...)]
    for bad in ('{"event": "media"', j({**media(3, payload), "event": 5})):
        for proto in (fast, slow):
            with pytest.raises(ProtocolError):
                proto.receive_audio(bad) if proto is fast else proto.receive_text(bad)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_audio_text_is_the_message_send_renders(provider: str) -> None:
    proto = started(provider)
    assert proto.wire is not None
    n = proto.wire.bytes_for_ms(20)  # one frame in the provider's codec
    for payload in (bytes(n), bytes(i % 251 for i in range(n)), b"\xff" * n * 2):
        assert proto.audio_text(payload) == proto.send(SendAudio(payload))[0]
    for wrong in (b"", bytes(n - 1), bytes(n + 1)):
        with pytest.raises(CommandError) as fast:
            proto.audio_text(wrong)
        with pytest.raises(CommandError) as slow:
            proto.send(SendAudio(wrong))
        assert str(fast.value) == str(slow.value)
    assert proto.audio_text(bytearray(n)) == proto.send(SendAudio(bytes(n)))[0]


def test_audio_text_before_start_is_refused_as_send_refuses_it() -> None:
    with pytest.raises(CommandError, match="before 'start'"):
        TwilioProtocol().audio_text(bytes(160))
