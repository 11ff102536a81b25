"""SIP message parsing, serialization, helpers and TCP stream framing."""

from __future__ import annotations

import pytest

from gateway.sip.message import (
    Headers,
    SipParseError,
    SipRequest,
    SipResponse,
    SipStreamParser,
    make_response,
    parse_message,
    parse_name_addr,
    parse_uri,
    parse_via,
)
from tests.sip import samples


@pytest.mark.parametrize(
    "raw", [samples.sipp_invite(), samples.baresip_invite(), samples.asterisk_invite()]
)
def test_realistic_invites_parse_and_round_trip(raw: bytes) -> None:
    msg = parse_message(raw)
    assert isinstance(msg, SipRequest)
    assert msg.method == "INVITE"
    assert msg.cseq[1] == "INVITE"
    assert msg.top_via.branch and msg.top_via.branch.startswith("z9hG4bK")
    assert msg.from_addr.tag
    assert msg.to_addr.tag is None
    assert msg.content_type == "application/sdp"
    assert msg.body.startswith(b"v=0") and msg.body.endswith(b"\r\n")
    again = parse_message(msg.to_bytes())
    assert again == msg
    assert again.to_bytes() == msg.to_bytes()


def test_header_lookup_is_case_insensitive_and_lists_split() -> None:
    msg = parse_message(samples.baresip_invite())
    assert msg.headers.get("call-id") == msg.headers.get("CALL-ID") == "93a2c5e9b0f1d7a6"
    assert msg.headers.get("i") == "93a2c5e9b0f1d7a6"  # compact form looks up the long name
    allow = msg.headers.get_all("Allow")
    assert allow[:3] == ["INVITE", "ACK", "BYE"] and "REFER" in allow
    assert msg.headers.get_all("Supported") == ["replaces", "norefersub"]
    assert msg.from_addr.display == "Alice"
    assert msg.from_addr.uri.user == "alice" and msg.from_addr.uri.host == "example.org"
    assert msg.top_via.params["rport"] is None
    assert msg.top_via.port == 45114


def test_compact_forms_folding_and_multi_value_via() -> None:
    msg = parse_message(samples.COMPACT_FOLDED)
    assert isinstance(msg, SipRequest)
    assert msg.call_id == "cid-77@client"
    vias = msg.vias
    assert [v.transport for v in vias] == ["TCP", "UDP"]
    assert vias[1].params["received"] == "10.1.1.1"
    assert vias[1].port is None
    assert msg.to_addr.display == "Bob" and msg.to_addr.uri.user == "bob"
    assert msg.headers.get_all("k") == ["timer", "replaces"]
    assert msg.content_type == "text/plain"
    assert msg.body == b"hello"
    contact = parse_name_addr(msg.headers.get_all("Contact")[0])
    assert contact.uri.params == {"transport": "tcp"}


def test_body_follows_content_length_and_lf_only_lines() -> None:
    raw = (
        b"MESSAGE sip:a@b SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\nCall-ID: c\n"
        b"CSeq: 1 MESSAGE\nFrom: <sip:x@y>;tag=1\nTo: <sip:a@b>\nContent-Length: 3\n\nabcdef"
    )
    msg = parse_message(raw)
    assert msg.body == b"abc"
    assert msg.cseq == (1, "MESSAGE")


def test_missing_content_length_takes_rest_of_datagram() -> None:
    raw = b"SIP/2.0 200 OK\r\nCall-ID: x\r\n\r\nbody!"
    msg = parse_message(raw)
    assert isinstance(msg, SipResponse)
    assert msg.status == 200 and msg.reason == "OK" and msg.body == b"body!"


def test_leading_crlf_is_ignored() -> None:
    msg = parse_message(b"\r\n\r\nSIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n")
    assert isinstance(msg, SipResponse) and msg.status == 180


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (b"HELLO\r\n\r\n", "request line"),
        (b"INVITE sip:a@b SIP/3.0\r\n\r\n", "version"),
        (b"INV(TE sip:a@b SIP/2.0\r\n\r\n", "method"),
        (b"INVITE nouri SIP/2.0\r\n\r\n", "Request-URI"),
        (b"SIP/2.0 99 Odd\r\n\r\n", "status code"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nNo colon here\r\n\r\n", "header line"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: x\r\n\r\n", "Content-Length"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 10\r\n\r\nabc", "Content-Length says"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nSubject: \xff\xfe\r\n\r\n", "UTF-8"),
        (b" folded first\r\n", "request line"),
    ],
)
def test_malformed_messages_raise_clear_errors(raw: bytes, fragment: str) -> None:
    with pytest.raises(SipParseError, match=fragment):
        parse_message(raw)


def test_partial_message_is_kept_for_a_400() -> None:
    raw = (
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKq\r\nCall-ID: c\r\n"
        b"Content-Length: 99\r\n\r\nshort"
    )
    with pytest.raises(SipParseError) as info:
        parse_message(raw)
    partial = info.value.partial
    assert isinstance(partial, SipRequest) and partial.headers.get("Call-ID") == "c"


def test_bad_cseq_and_missing_headers() -> None:
    msg = parse_message(b"OPTIONS sip:a@b SIP/2.0\r\nCSeq: one OPTIONS\r\n\r\n")
    with pytest.raises(SipParseError, match="CSeq"):
        _ = msg.cseq
    with pytest.raises(SipParseError, match="Call-ID"):
        _ = msg.call_id
    with pytest.raises(SipParseError, match="Via"):
        _ = msg.top_via


def test_make_response_copies_dialog_headers_and_adds_tag() -> None:
    req = parse_message(samples.asterisk_invite())
    assert isinstance(req, SipRequest)
    resp = make_response(req, 180, to_tag="ourtag", headers=[("Contact", "<sip:gw@10.0.0.9>")])
    assert resp.status == 180 and resp.reason == "Ringing"
    assert resp.headers.get_all("Via") == req.headers.get_all("Via")
    assert resp.headers.get("From") == req.headers.get("From")
    assert resp.to_addr.tag == "ourtag"
    assert resp.call_id == req.call_id and resp.cseq == req.cseq
    assert "X-Customer-Id" not in resp.headers
    parsed = parse_message(resp.to_bytes())
    assert isinstance(parsed, SipResponse) and parsed.to_addr.tag == "ourtag"
    # a To that already has a tag keeps it
    again = make_response(parsed_request_with_tag(), 200, to_tag="other")
    assert again.to_addr.tag == "theirs"


def parsed_request_with_tag() -> SipRequest:
    raw = (
        b"BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKz\r\n"
        b"From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=theirs\r\nCall-ID: c\r\nCSeq: 2 BYE\r\n\r\n"
    )
    msg = parse_message(raw)
    assert isinstance(msg, SipRequest)
    return msg


def test_uri_and_address_parsing() -> None:
    uri = parse_uri("sips:bob:secret@[2001:db8::1]:5061;transport=tls;lr?subject=hi")
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips", "bob", "secret", "[2001:db8::1]", 5061,
    )  # fmt: skip
    assert uri.params == {"transport": "tls", "lr": None} and uri.headers == "subject=hi"
    assert parse_uri(str(uri)) == uri
    tel = parse_uri("tel:+15551234;phone-context=example.com")
    assert tel.scheme == "tel" and tel.user == "+15551234"
    bare = parse_name_addr("sip:carol@chicago.com;tag=887s")
    assert bare.tag == "887s" and bare.uri.params == {}
    quoted = parse_name_addr('"A \\"quoted\\" name" <sip:q@h>;tag=9')
    assert quoted.display == 'A "quoted" name' and quoted.tag == "9"
    assert parse_name_addr(str(bare)) == bare
    via = parse_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=5062;received=1.2.3.4")
    assert via.params["rport"] == "5062" and parse_via(str(via)) == via
    for bad in ("nocolon", "sip:", "sip:a@h:99999", "sip:a@[::1"):
        with pytest.raises(SipParseError):
            parse_uri(bad)
    with pytest.raises(SipParseError):
        parse_name_addr('"unclosed <sip:a@b>')
    with pytest.raises(SipParseError):
        parse_via("HTTP/1.1 host")


def test_headers_set_replaces_all_copies_in_place() -> None:
    h = Headers([("Via", "a"), ("To", "t"), ("v", "b"), ("Content-Length", "3")])
    h.set("via", "c")
    assert h.items() == [("Via", "c"), ("To", "t"), ("Content-Length", "3")]
    h.remove("l")
    assert "Content-Length" not in h and len(h) == 2


def test_stream_parser_frames_split_and_joined_messages() -> None:
    one = samples.sipp_invite()
    two = samples.baresip_invite()
    stream = b"\r\n\r\n" + one + two + b"\r\n" + samples.asterisk_invite()
    parser = SipStreamParser()
    got = []
    for i in range(0, len(stream), 37):  # awkward chunk size splits headers and bodies
        got += parser.feed(stream[i : i + 37])
    assert [m.call_id for m in got] == [
        parse_message(one).call_id,
        parse_message(two).call_id,
        parse_message(samples.asterisk_invite()).call_id,
    ]
    assert got[1].body == parse_message(two).body
    assert parser.buffered == 0


def test_stream_parser_waits_for_body_and_rejects_garbage() -> None:
    parser = SipStreamParser()
    raw = samples.sipp_invite()
    assert parser.feed(raw[:-5]) == []
    assert len(parser.feed(raw[-5:])) == 1
    with pytest.raises(SipParseError):
        parser.feed(b"GARBAGE LINE\r\n\r\n")
    assert parser.buffered == 0
