"""Hypothesis fuzzing: arbitrary or mutated input only ever parses or raises the module's error."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.sip.auth import DigestAuth, parse_auth_params
from gateway.sip.dtmf import DtmfDecoder
from gateway.sip.jitter import JitterBuffer
from gateway.sip.message import SipParseError, SipResponse, SipStreamParser, parse_message
from gateway.sip.rtp import RtpError, RtpPacket, parse_rtp
from gateway.sip.sdp import SdpError, negotiate, parse_sdp
from gateway.sip.uas import Send, SipUas, UasConfig
from tests.sip import samples

SEEDS = [
    samples.sipp_invite(),
    samples.baresip_invite(),
    samples.asterisk_invite(),
    samples.COMPACT_FOLDED,
]
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    """A real message with a few bytes replaced, inserted or deleted."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["replace", "insert", "delete", "cut"]))
        chunk = draw(
            st.binary(min_size=1, max_size=4)
            | st.sampled_from([b":", b"\r\n", b" ", b";", b"<", b'"', b"\xff"])
        )
        if op == "replace":
            data[pos : pos + len(chunk)] = chunk
        elif op == "insert":
            data[pos:pos] = chunk
        elif op == "delete":
            del data[pos : pos + len(chunk)]
        else:
            del data[pos:]
    return bytes(data)


def exercise_accessors(msg: object) -> None:
    """Structured accessors may raise only SipParseError too."""
    for name in ("call_id", "cseq", "top_via", "vias", "from_addr", "to_addr", "content_type"):
        try:
            getattr(msg, name)
        except SipParseError:
            pass


@FUZZ
@given(st.binary(max_size=600) | mutated(SEEDS))
def test_message_parser_never_crashes(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError:
        return
    exercise_accessors(msg)
    again = parse_message(msg.to_bytes())  # what we parsed serializes and parses back the same
    assert again == msg  # to_bytes() set Content-Length on msg too, so headers match exactly


@FUZZ
@given(st.lists(st.binary(max_size=200) | mutated(SEEDS), max_size=5), st.integers(1, 97))
def test_stream_parser_never_crashes(chunks: list[bytes], size: int) -> None:
    parser = SipStreamParser()
    data = b"".join(chunks)
    for i in range(0, len(data), size):
        try:
            for msg in parser.feed(data[i : i + size]):
                exercise_accessors(msg)
        except SipParseError:
            parser = SipStreamParser()  # the I/O shell closes the connection


SDP_SEEDS = [s.encode() for s in (samples.SDP_PCMU, samples.BARESIP_SDP, samples.ASTERISK_SDP)]


@FUZZ
@given(st.binary(max_size=400) | st.text(max_size=300) | mutated(SDP_SEEDS))
def test_sdp_parser_never_crashes(data: bytes | str) -> None:
    try:
        negotiate(parse_sdp(data))
    except SdpError:
        pass


@FUZZ
@given(st.binary(max_size=300))
def test_rtp_parser_and_consumers_never_crash(data: bytes) -> None:
    try:
        pkt = parse_rtp(data)
    except RtpError:
        return
    assert parse_rtp(pkt.to_bytes()) == pkt
    try:
        DtmfDecoder().feed(pkt)
    except RtpError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 3), st.booleans()), max_size=60))
def test_jitter_buffer_invariants(events: list[tuple[int, int, bool]]) -> None:
    jb = JitterBuffer(depth_frames=2)
    for seq, ssrc, pop in events:
        jb.push(RtpPacket(0, seq, seq * 160, ssrc, b"x"))
        assert len(jb) <= jb.max_frames
        if pop:
            out = jb.pop()
            assert out is None or out == b"x" or repr(out) == "LOST"


@FUZZ
@given(st.lists(st.binary(max_size=300) | mutated(SEEDS), max_size=6))
def test_uas_never_crashes_on_garbage(datagrams: list[bytes]) -> None:
    uas = SipUas(UasConfig(host="192.0.2.10"))
    now = 0.0
    for data in datagrams:
        for action in uas.receive(data, ("10.0.0.5", 5060), now=now):
            if hasattr(action, "to_bytes"):
                action.to_bytes()
        now += 0.3
        uas.on_timer(now)


# ------------------------------------------------------------------ the SIP auth header

AUTH_SECRET = b"k" * 32
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # what the SIP parser refuses in headers
SURROGATE = re.compile("[\ud800-\udfff]")
header_text = st.text(
    alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)),
    max_size=80)
auth_param_value = header_text | st.text(alphabet=st.characters(min_codepoint=0x80),
                                         min_size=1, max_size=40) | st.sampled_from(
    ["", "agent", "atoms-gateway", "MD5", "md5-sess", "auth", "auth-int", "00000001",
     "sip:agent@192.0.2.10:5060", "0" * 32, "\u0661\u0662.\u0663"])
auth_params = st.dictionaries(
    st.sampled_from(["username", "realm", "nonce", "uri", "response", "algorithm", "qop",
                     "nc", "cnonce", "opaque"]) | header_text.filter(lambda k: "=" not in k),
    auth_param_value, max_size=10)


def digest_header(scheme: str, params: dict[str, str], quoted: bool) -> str:
    parts = [f'{k}="{v}"' if quoted else f"{k}={v}" for k, v in params.items()]
    return f"{scheme} " + ", ".join(parts)


def auth_fixture() -> tuple[DigestAuth, str]:
    auth = DigestAuth("atoms-gateway", {"agent": "s3cret"}, secret=AUTH_SECRET)
    return auth, auth.make_nonce(100.0)


@FUZZ
@given(scheme=st.sampled_from(["Digest", "digest", "Basic", ""]) | header_text,
       params=auth_params, quoted=st.booleans(), genuine_nonce=st.booleans(),
       raw=header_text)
def test_digest_check_answers_for_any_header(scheme: str, params: dict[str, str], quoted: bool,
                                             genuine_nonce: bool, raw: str) -> None:
    auth, nonce = auth_fixture()
    if genuine_nonce:
        params = {**params, "nonce": nonce, "username": "agent", "realm": "atoms-gateway",
                  "uri": "sip:agent@192.0.2.10:5060"}
    for value in (digest_header(scheme, params, quoted), raw, "Digest " + raw):
        verdict = auth.check("INVITE", value, 100.5, request_uri="sip:agent@192.0.2.10:5060")
        assert verdict in ("fail", "stale")  # nobody here knows the password
        scheme_seen, parsed = parse_auth_params(value)
        assert isinstance(scheme_seen, str) and isinstance(parsed, dict)


@FUZZ
@given(params=auth_params, quoted=st.booleans(), genuine_nonce=st.booleans())
def test_uas_answers_an_invite_with_any_authorization(params: dict[str, str], quoted: bool,
                                                      genuine_nonce: bool) -> None:
    auth, nonce = auth_fixture()
    if genuine_nonce:
        params = {**params, "nonce": nonce}
    uas = SipUas(UasConfig(host="192.0.2.10", port=5060, auth=auth))
    header = digest_header("Digest", params, quoted)
    line = f"Authorization: {header}\r\nContent-Type:".encode("utf-8", "surrogatepass")
    invite = samples.sipp_invite().replace(b"Content-Type:", line, 1)
    actions = uas.receive(invite, ("10.0.0.5", 5061), now=100.5)
    statuses = [a.message.status for a in actions
                if isinstance(a, Send) and isinstance(a.message, SipResponse)]
    if CONTROL.search(header) or SURROGATE.search(header):
        # not a SIP message (a control character, or bytes that are not UTF-8): dropped,
        # as any such datagram is
        assert statuses in ([], [400]), statuses
    else:  # a 401 (403 once a source failed too often), never silence and never a call
        assert statuses and statuses[-1] in (401, 403), statuses
    for action in actions:
        if hasattr(action, "to_bytes"):
            action.to_bytes()
