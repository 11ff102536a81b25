"""SDP offer parsing and answer building."""

from __future__ import annotations

import pytest

from gateway.sip.sdp import (
    NoCommonCodec,
    SdpError,
    build_answer,
    build_offer,
    negotiate,
    parse_sdp,
)
from tests.sip import samples


def offer(media: str, *attrs: str, conn: str = "203.0.113.7", extra: str = "") -> str:
    lines = ["v=0", "o=- 1 1 IN IP4 203.0.113.7", "s=-", f"c=IN IP4 {conn}", "t=0 0"]
    lines += [f"m={media}", *attrs]
    return "\r\n".join(lines) + "\r\n" + extra


def answer_for(text: str | bytes) -> tuple[object, bytes]:
    parsed = parse_sdp(text)
    neg = negotiate(parsed)
    return neg, build_answer(parsed, neg, "198.51.100.2", 40000, session_id=7, version=1)


def test_pcmu_only_offer_without_rtpmap() -> None:
    neg, ans = answer_for(offer("audio 5004 RTP/AVP 0"))
    assert neg.codec.name == "PCMU" and neg.codec.payload_type == 0
    assert neg.dtmf_payload_type is None
    assert (neg.remote_host, neg.remote_port) == ("203.0.113.7", 5004)
    assert neg.direction == "sendrecv" and not neg.on_hold and neg.encoding == "pcmu"
    parsed = parse_sdp(ans)
    audio = parsed.audio
    assert audio is not None and audio.port == 40000 and audio.formats == ["0"]
    assert audio.ptime == 20 and audio.direction == "sendrecv"
    assert parsed.connection == "198.51.100.2"
    assert b"telephone-event" not in ans


def test_pcma_first_is_preferred_and_dtmf_pt_is_kept() -> None:
    neg, ans = answer_for(samples.ASTERISK_SDP)
    assert neg.codec.name == "PCMA" and neg.codec.payload_type == 8
    assert neg.dtmf_payload_type == 101
    audio = parse_sdp(ans).audio
    assert audio is not None and audio.formats == ["8", "101"]
    assert audio.rtpmap[101] == ("telephone-event", 8000, 1)
    assert audio.fmtp[101] == "0-16"


def test_opus_first_falls_back_to_pcmu() -> None:
    neg, ans = answer_for(samples.BARESIP_SDP)
    assert neg.codec.name == "PCMU"
    assert neg.dtmf_payload_type == 101
    assert (neg.remote_host, neg.remote_port) == ("192.168.1.20", 10164)
    assert b"opus" not in ans


def test_dynamic_telephone_event_at_8k_is_chosen_over_48k() -> None:
    neg, _ = answer_for(
        offer(
            "audio 7000 RTP/AVP 111 0 110 126",
            "a=rtpmap:111 opus/48000/2",
            "a=rtpmap:110 telephone-event/48000",
            "a=rtpmap:126 telephone-event/8000",
        )
    )
    assert neg.codec.payload_type == 0 and neg.dtmf_payload_type == 126


def test_no_common_codec_raises_clear_error() -> None:
    with pytest.raises(NoCommonCodec, match="opus"):
        negotiate(parse_sdp(offer("audio 7000 RTP/AVP 111 9", "a=rtpmap:111 opus/48000/2")))
    with pytest.raises(NoCommonCodec):  # SRTP profile is not supported
        negotiate(parse_sdp(offer("audio 7000 RTP/SAVP 0")))


@pytest.mark.parametrize(
    ("attrs", "conn", "direction"),
    [
        (("a=sendonly",), "203.0.113.7", "recvonly"),
        (("a=inactive",), "203.0.113.7", "inactive"),
        ((), "0.0.0.0", "recvonly"),
        (("a=recvonly",), "203.0.113.7", "sendonly"),
    ],
)
def test_hold_offers(attrs: tuple[str, ...], conn: str, direction: str) -> None:
    neg, ans = answer_for(offer("audio 5004 RTP/AVP 0", *attrs, conn=conn))
    assert neg.direction == direction
    assert neg.on_hold == (direction in ("recvonly", "inactive"))
    assert f"a={direction}".encode() in ans


def test_media_level_connection_and_rejected_streams() -> None:
    text = offer(
        "video 9000 RTP/AVP 96",
        "a=rtpmap:96 VP8/90000",
        extra="m=audio 6000 RTP/AVP 8\r\nc=IN IP4 192.0.2.1\r\na=ptime:30\r\n",
    )
    parsed = parse_sdp(text)
    neg = negotiate(parsed)
    assert neg.remote_host == "192.0.2.1" and neg.media_index == 1
    answer = parse_sdp(build_answer(parsed, neg, "198.51.100.2", 40000))
    assert [(m.media, m.port) for m in answer.media] == [("video", 0), ("audio", 40000)]


def test_ipv6_answer_and_offer_builder() -> None:
    raw = build_offer("2001:db8::5", 30000)
    parsed = parse_sdp(raw)
    assert parsed.connection == "2001:db8::5"
    assert b"IN IP6 2001:db8::5" in raw
    neg = negotiate(parsed)
    assert neg.codec.name == "PCMU" and neg.dtmf_payload_type == 101


@pytest.mark.parametrize(
    "text",
    [
        "o=- 1 1 IN IP4 h\r\n",  # no v=
        "v=1\r\n",
        "v=0\r\nc=IN IP4\r\n",
        "v=0\r\nm=audio x RTP/AVP 0\r\n",
        "v=0\r\nm=audio 5000 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n",
        "v=0\r\nnot a line\r\n",
    ],
)
def test_malformed_sdp(text: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(text)


def test_missing_connection_is_an_sdp_error() -> None:
    parsed = parse_sdp("v=0\r\nm=audio 5000 RTP/AVP 0\r\n")
    with pytest.raises(SdpError, match="c="):
        negotiate(parsed)
