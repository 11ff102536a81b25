"""Hand-written SIP messages in the style real peers send (sipp uac, baresip, Asterisk)."""

from __future__ import annotations

from gateway.sip.rtp_session import RtpSession
from gateway.sip.sdp import parse_sdp

SDP_PCMU = (
    "v=0\r\n"
    "o=user1 53655765 2353687637 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "c=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\n"
    "m=audio 6000 RTP/AVP 0\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
)


def sipp_invite(branch: str = "z9hG4bK-1234-1-0", call_id: str = "1-1234@127.0.0.1") -> bytes:
    """Like sipp's built-in uac scenario (-sn uac), with an SDP body."""
    body = SDP_PCMU
    return (
        "INVITE sip:service@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n"
        "From: sipp <sip:sipp@127.0.0.1:5061>;tag=1234SIPpTag001\r\n"
        "To: service <sip:service@127.0.0.1:5060>\r\n"
        f"Call-ID: {call_id}\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: sip:sipp@127.0.0.1:5061\r\n"
        "Max-Forwards: 70\r\n"
        "Subject: Performance Test\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n" + body
    ).encode()


BARESIP_SDP = (
    "v=0\r\n"
    "o=- 1938471942 2103948261 IN IP4 192.168.1.20\r\n"
    "s=-\r\n"
    "c=IN IP4 192.168.1.20\r\n"
    "t=0 0\r\n"
    "m=audio 10164 RTP/AVP 96 0 8 101\r\n"
    "b=AS:128\r\n"
    "a=rtpmap:96 opus/48000/2\r\n"
    "a=fmtp:96 stereo=1;sprop-stereo=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=sendrecv\r\n"
    "a=label:1\r\n"
    "a=ssrc:1539436227 cname:sip:alice@example.org\r\n"
    "a=rtcp-rsize\r\n"
    "a=ptime:20\r\n"
)


def baresip_invite() -> bytes:
    """Like baresip 1.x/3.x: rport, compact-free headers, Allow, Supported, opus first."""
    body = BARESIP_SDP
    return (
        "INVITE sip:agent@192.168.1.10:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 192.168.1.20:45114;branch=z9hG4bK79c1a2f03b66e2d1;rport\r\n"
        "Contact: <sip:alice-0x55d1@192.168.1.20:45114;transport=udp>\r\n"
        "Max-Forwards: 70\r\n"
        "To: <sip:agent@192.168.1.10:5060>\r\n"
        'From: "Alice" <sip:alice@example.org>;tag=0fe1b8e2a0f3d4c5\r\n'
        "Call-ID: 93a2c5e9b0f1d7a6\r\n"
        "CSeq: 22017 INVITE\r\n"
        "User-Agent: baresip v3.10.1 (x86_64/linux)\r\n"
        "Allow: INVITE,ACK,BYE,CANCEL,OPTIONS,NOTIFY,SUBSCRIBE,INFO,MESSAGE,UPDATE,REFER\r\n"
        "Supported: replaces,norefersub\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n" + body
    ).encode()


ASTERISK_SDP = (
    "v=0\r\n"
    "o=- 1027471811 1027471811 IN IP4 10.0.0.5\r\n"
    "s=Asterisk\r\n"
    "c=IN IP4 10.0.0.5\r\n"
    "t=0 0\r\n"
    "m=audio 17424 RTP/AVP 8 0 101\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-16\r\n"
    "a=ptime:20\r\n"
    "a=maxptime:140\r\n"
    "a=sendrecv\r\n"
)


def asterisk_invite() -> bytes:
    """Like Asterisk PJSIP dialing an endpoint: Record-Route-free, X- headers, P-Asserted."""
    body = ASTERISK_SDP
    return (
        "INVITE sip:gateway@10.0.0.9:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bKPj3f0c7f7e-5f1b-4e71-9f0e-2d1c4a6b8e90\r\n"
        'From: "+15551230000" <sip:+15551230000@10.0.0.5>;tag=7b1c5a0e-8c53-4b5f-a1a2-e0f1d2c3b4a5\r\n'
        "To: <sip:gateway@10.0.0.9>\r\n"
        "Contact: <sip:asterisk@10.0.0.5:5060>\r\n"
        "Call-ID: 2c7e51f4-1b3f-47e2-9a55-6d1e0c9b8a7f\r\n"
        "CSeq: 24713 INVITE\r\n"
        "Allow: OPTIONS, REGISTER, SUBSCRIBE, NOTIFY, PUBLISH, INVITE, ACK, BYE, CANCEL, UPDATE, PRACK, INFO, MESSAGE, REFER\r\n"
        "Supported: 100rel, timer, replaces, norefersub, histinfo\r\n"
        "Session-Expires: 1800\r\n"
        "Min-SE: 90\r\n"
        "P-Asserted-Identity: <sip:+15551230000@10.0.0.5>\r\n"
        "X-Customer-Id: acme-42\r\n"
        "X-Campaign: spring\r\n"
        "Max-Forwards: 70\r\n"
        "User-Agent: Asterisk PBX 20.5.0\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n" + body
    ).encode()


COMPACT_FOLDED = (
    b"OPTIONS sip:gw@example.com SIP/2.0\r\n"
    b"v: SIP/2.0/TCP client.example.com:5070;branch=z9hG4bKaaa,\r\n"
    b"   SIP/2.0/UDP proxy.example.com;branch=z9hG4bKbbb;received=10.1.1.1\r\n"
    b"f: <sip:alice@example.com>;tag=abc\r\n"
    b"t: Bob\r\n"
    b" <sip:bob@example.com>\r\n"
    b"i: cid-77@client\r\n"
    b"CSeq: 7 OPTIONS\r\n"
    b"m: <sip:alice@client.example.com:5070;transport=tcp>\r\n"
    b"k: timer, replaces\r\n"
    b"c: text/plain\r\n"
    b"l: 5\r\n"
    b"\r\n"
    b"hello"
)


CALLER_RTP = ("10.0.0.5", 17424)  # what ASTERISK_SDP says
NATTED = ("203.0.113.9", 40123)  # where its packets really come from (behind a NAT)


def answered_session() -> RtpSession:
    """An RTP session (ours at 192.0.2.10:40000) that has answered ASTERISK_SDP: A-law."""
    s = RtpSession("192.0.2.10", 40000)
    answer = parse_sdp(s.answer(ASTERISK_SDP.encode()))
    assert answer.audio is not None and answer.audio.formats == ["8", "101"]
    return s
