"""The UAS state machine, driven step by step with injected time."""

from __future__ import annotations

import hashlib
import logging

import pytest

from gateway.sip.auth import DigestAuth, parse_auth_params
from gateway.sip.message import SipRequest, SipResponse, parse_message
from gateway.sip.sdp import NoCommonCodec, build_answer, negotiate, parse_sdp
from gateway.sip.uas import (
    CallConfirmed,
    CallEnded,
    CallOffered,
    CallState,
    CallUpdated,
    DtmfReceived,
    Send,
    SipCall,
    SipUas,
    TransferStatus,
    UasConfig,
)
from tests.sip import samples
from tests.sip.phone import Phone, of_type, responses, run_until, sent, statuses

ANSWER_SDP = b"v=0\r\no=atoms 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n"


def make_uas(**kw: object) -> SipUas:
    return SipUas(UasConfig(host="192.0.2.10", port=5060, **kw))  # type: ignore[arg-type]


def offered(uas: SipUas, phone: Phone, now: float = 0.0, **kw: object) -> SipCall:
    actions = uas.receive(phone.invite(**kw), phone.addr, now=now)  # type: ignore[arg-type]
    assert statuses(actions) == [100]
    (event,) = of_type(actions, CallOffered)
    return event.call


def confirmed(uas: SipUas, phone: Phone, now: float = 0.0) -> SipCall:
    call = offered(uas, phone, now)
    (ok,) = responses(uas.answer(call, ANSWER_SDP, now=now))
    actions = uas.receive(phone.ack(ok), phone.addr, now=now)
    assert of_type(actions, CallConfirmed)
    return call


def test_basic_call_invite_answer_ack_bye() -> None:
    uas, phone = make_uas(), Phone()
    actions = uas.receive(phone.invite(headers=["X-Tenant: acme", "x-room: 12"]), phone.addr, now=0)
    (trying,) = responses(actions)
    assert trying.status == 100 and trying.to_addr.tag is None
    assert trying.call_id == phone.call_id and trying.cseq == (1, "INVITE")
    assert all(isinstance(a, Send) and a.addr == phone.addr for a in actions if isinstance(a, Send))
    call = of_type(actions, CallOffered)[0].call
    assert call.offer == samples.SDP_PCMU.encode()
    ctx = call.context()
    assert ctx["user_number"] == "+15551234567" and ctx["agent_number"] == "agent"
    assert ctx["call_id"] == phone.call_id and ctx["direction"] == "inbound"
    assert ctx["x_headers"] == {"X-Tenant": "acme", "x-room": "12"}

    (ok,) = responses(uas.answer(call, ANSWER_SDP, now=0.1))
    assert ok.status == 200 and ok.to_addr.tag == call.local_tag
    assert ok.content_type == "application/sdp" and ok.body == ANSWER_SDP
    assert "sip:atoms@192.0.2.10:5060" in (ok.headers.get("Contact") or "")
    assert call.state == CallState.ANSWERED

    actions = uas.receive(phone.ack(ok), phone.addr, now=0.2)
    assert [type(a) for a in actions] == [CallConfirmed]
    assert call.state == CallState.CONFIRMED

    actions = uas.receive(phone.in_dialog("BYE"), phone.addr, now=5)
    assert statuses(actions) == [200]
    (ended,) = of_type(actions, CallEnded)
    assert ended.call is call and ended.reason == "bye"
    assert uas.calls == []


def test_200_ok_retransmits_with_t1_doubling_until_ack() -> None:
    uas, phone = make_uas(), Phone()
    call = offered(uas, phone)
    (ok,) = responses(uas.answer(call, ANSWER_SDP, now=0.0))
    fired = run_until(uas, 8.0)
    times = [t for t, a in fired if isinstance(a, Send)]
    assert times == [0.5, 1.5, 3.5, 7.5]  # T1, then doubling, capped at T2 = 4 s
    assert all(m.status == 200 for m in sent([a for _, a in fired]))
    uas.receive(phone.ack(ok), phone.addr, now=8.0)
    assert [a for _, a in run_until(uas, 100.0) if isinstance(a, Send)] == []


def test_no_ack_gives_up_after_64_t1_and_sends_bye() -> None:
    uas, phone = make_uas(), Phone()
    call = offered(uas, phone)
    uas.answer(call, ANSWER_SDP, now=0.0)
    fired = run_until(uas, 32.0)
    resent = [t for t, a in fired if isinstance(a, Send) and isinstance(a.message, SipResponse)]
    assert resent == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    ended = [(t, a) for t, a in fired if isinstance(a, CallEnded)]
    assert ended == [(32.0, ended[0][1])] and ended[0][1].reason == "no ACK"
    byes = [m for m in sent([a for _, a in fired]) if isinstance(m, SipRequest)]
    assert [m.method for m in byes] == ["BYE"]
    bye = byes[0]
    assert bye.uri == f"sip:phone@{phone.addr[0]}:{phone.addr[1]}"
    # BYE is retransmitted (Timer E) until its 200 arrives
    again = [a for _, a in run_until(uas, 33.0) if isinstance(a, Send)]
    assert [m.method for m in sent(again)] == ["BYE"]  # type: ignore[union-attr]
    assert uas.receive(Phone.respond(bye, 200), phone.addr, now=33.1) == []
    assert [a for _, a in run_until(uas, 200.0) if isinstance(a, Send)] == []


def test_retransmitted_invite_repeats_last_response_not_a_new_call() -> None:
    uas, phone = make_uas(), Phone()
    raw = phone.invite(branch="z9hG4bK-same")
    first = uas.receive(raw, phone.addr, now=0)
    call = of_type(first, CallOffered)[0].call
    again = uas.receive(raw, phone.addr, now=0.5)
    assert statuses(again) == [100] and not of_type(again, CallOffered)
    uas.answer(call, ANSWER_SDP, now=1)
    after = uas.receive(raw, phone.addr, now=1.2)
    assert statuses(after) == [200] and responses(after)[0].body == ANSWER_SDP
    assert len(uas.calls) == 1


def test_cancel_before_answer_gives_200_and_487() -> None:
    uas, phone = make_uas(), Phone()
    call = offered(uas, phone)
    actions = uas.receive(phone.cancel(), phone.addr, now=1.0)
    resps = responses(actions)
    assert [(r.status, r.cseq[1]) for r in resps] == [(200, "CANCEL"), (487, "INVITE")]
    assert resps[1].to_addr.tag == call.local_tag
    (ended,) = of_type(actions, CallEnded)
    assert ended.reason == "cancelled" and call.state == CallState.ENDED
    assert uas.answer(call, ANSWER_SDP, now=1.1) == []  # too late: nothing happens
    # 487 is retransmitted until the ACK (same branch as the INVITE)
    fired = run_until(uas, 1.6)
    assert [m.status for m in responses([a for _, a in fired])] == [487]
    assert uas.receive(phone.ack(resps[1]), phone.addr, now=1.7) == []
    assert [a for _, a in run_until(uas, 100.0) if isinstance(a, Send)] == []


def test_cancel_for_unknown_transaction_is_481() -> None:
    uas, phone = make_uas(), Phone()
    phone.invite_branch = "z9hG4bK-never-sent"
    assert statuses(uas.receive(phone.cancel(), phone.addr, now=0)) == [481]


def test_options_answers_200_with_allow() -> None:
    uas, phone = make_uas(), Phone()
    raw = phone._request("OPTIONS", "z9hG4bK-opt", "<sip:agent@192.0.2.10>", 1)
    (resp,) = responses(uas.receive(raw, phone.addr, now=0))
    assert resp.status == 200
    assert {"INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"} <= set(resp.headers.get_all("Allow"))
    assert resp.to_addr.tag


def test_reinvite_hold_and_resume() -> None:
    uas, phone = make_uas(), Phone()
    call = confirmed(uas, phone)
    hold = samples.SDP_PCMU.replace("a=rtpmap:0 PCMU/8000", "a=rtpmap:0 PCMU/8000\r\na=sendonly")
    actions = uas.receive(
        phone.in_dialog("INVITE", body=hold.encode(), content_type="application/sdp"),
        phone.addr,
        now=10,
    )
    assert statuses(actions) == [100]
    (update,) = of_type(actions, CallUpdated)
    neg = negotiate(parse_sdp(update.sdp))
    assert neg.on_hold
    answer = build_answer(parse_sdp(update.sdp), neg, "192.0.2.10", 40000, version=2)
    (ok,) = responses(uas.answer(call, answer, now=10.1))
    assert ok.status == 200 and ok.cseq == (2, "INVITE") and b"a=recvonly" in ok.body
    assert uas.receive(phone.ack(ok), phone.addr, now=10.2) == []  # no second CallConfirmed
    assert [a for _, a in run_until(uas, 11.0) if isinstance(a, Send)] == []
    assert call.state == CallState.CONFIRMED
    # a re-INVITE we cannot take is refused without ending the call
    actions = uas.receive(
        phone.in_dialog("INVITE", body=hold.encode(), content_type="application/sdp"),
        phone.addr,
        now=12,
    )
    assert of_type(actions, CallUpdated)
    assert statuses(uas.reject(call, 488, now=12.1)) == [488]
    assert call.state == CallState.CONFIRMED


def test_refer_transfer_202_and_notify_sipfrag() -> None:
    uas, phone = make_uas(), Phone()
    call = confirmed(uas, phone)
    (refer,) = sent(uas.transfer(call, "+15550001111", now=20))
    assert isinstance(refer, SipRequest) and refer.method == "REFER"
    assert refer.headers.get("Refer-To") == f"<sip:+15550001111@{phone.addr[0]}>"
    assert refer.from_addr.tag == call.local_tag and refer.to_addr.tag == phone.tag
    assert refer.call_id == phone.call_id and refer.cseq[1] == "REFER"

    (status,) = uas.receive(Phone.respond(refer, 202, "Accepted"), phone.addr, now=20.1)
    assert isinstance(status, TransferStatus) and (status.status, status.final) == (202, False)

    def notify(frag: bytes, state: str) -> list:
        return uas.receive(
            phone.in_dialog(
                "NOTIFY",
                body=frag,
                content_type="message/sipfrag;version=2.0",
                headers=["Event: refer", f"Subscription-State: {state}"],
            ),
            phone.addr,
            now=21,
        )

    actions = notify(b"SIP/2.0 100 Trying\r\n", "active;expires=60")
    assert statuses(actions) == [200]
    assert [(s.status, s.final) for s in of_type(actions, TransferStatus)] == [(100, False)]
    actions = notify(b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource")
    assert [(s.status, s.final) for s in of_type(actions, TransferStatus)] == [(200, True)]
    # the caller reached the target: we end our leg with BYE (RFC 5589 6.1)
    assert statuses(actions) == [200]
    (ended,) = of_type(actions, CallEnded)
    assert ended.reason == "transferred" and call.state == CallState.ENDED
    (bye,) = [m for m in sent(actions) if isinstance(m, SipRequest)]
    assert bye.method == "BYE" and bye.to_addr.tag == phone.tag and bye.call_id == phone.call_id
    with pytest.raises(ValueError):
        uas.transfer(call, "", now=22)


def _notify(uas: SipUas, phone: Phone, frag: bytes, now: float) -> list:
    return uas.receive(
        phone.in_dialog("NOTIFY", body=frag, content_type="message/sipfrag;version=2.0",
                        headers=["Event: refer", "Subscription-State: terminated"]),
        phone.addr, now=now)


def test_failed_transfer_keeps_the_call() -> None:
    """A transfer the target refused (NOTIFY 486) is reported, and the call goes on."""
    uas, phone = make_uas(), Phone()
    call = confirmed(uas, phone)
    (refer,) = sent(uas.transfer(call, "+15550001111", now=1))
    uas.receive(Phone.respond(refer, 202, "Accepted"), phone.addr, now=1.1)
    actions = _notify(uas, phone, b"SIP/2.0 486 Busy Here\r\n", now=2)
    assert [(s.status, s.final) for s in of_type(actions, TransferStatus)] == [(486, True)]
    assert statuses(actions) == [200] and not of_type(actions, CallEnded)
    assert call.state == CallState.CONFIRMED


def test_notify_200_without_our_refer_does_not_end_the_call() -> None:
    uas, phone = make_uas(), Phone()
    call = confirmed(uas, phone)
    actions = _notify(uas, phone, b"SIP/2.0 200 OK\r\n", now=1)
    assert statuses(actions) == [200] and not of_type(actions, CallEnded)
    assert call.state == CallState.CONFIRMED


def test_refer_without_answer_times_out_as_408() -> None:
    uas, phone = make_uas(), Phone()
    call = confirmed(uas, phone)
    uas.transfer(call, "sip:desk@pbx.example.com", now=0)
    fired = run_until(uas, 40)
    statuses_seen = [(a.status, a.final) for _, a in fired if isinstance(a, TransferStatus)]
    assert statuses_seen == [(408, True)]


@pytest.mark.parametrize("method", ["MESSAGE", "SUBSCRIBE", "REGISTER", "PUBLISH"])
def test_unsupported_methods_get_405_with_allow(method: str) -> None:
    uas, phone = make_uas(), Phone()
    raw = phone._request(method, "z9hG4bK-m", "<sip:agent@192.0.2.10>", 1)
    (resp,) = responses(uas.receive(raw, phone.addr, now=0))
    assert resp.status == 405 and "INVITE" in resp.headers.get_all("Allow")


def test_in_dialog_requests_for_unknown_dialogs_get_481() -> None:
    uas, phone = make_uas(), Phone()
    phone.remote_tag = "no-such-tag"
    for method in ("BYE", "INFO", "INVITE"):
        assert statuses(uas.receive(phone.in_dialog(method), phone.addr, now=0)) == [481]
    bye_without_tag = phone._request("BYE", "z9hG4bK-b", "<sip:agent@192.0.2.10>", 9)
    assert statuses(uas.receive(bye_without_tag, phone.addr, now=0)) == [481]


def test_allowlist_answers_403_outside_and_serves_inside() -> None:
    uas = make_uas(allow=["10.0.0.0/8", "2001:db8::/32"])
    outside = Phone(("127.0.0.1", 5061))
    (resp,) = responses(uas.receive(outside.invite(), outside.addr, now=0))
    assert resp.status == 403 and not uas.calls
    assert uas.receive(outside.ack(resp), outside.addr, now=0) == []  # never answered
    inside = Phone(("10.1.2.3", 5060))
    assert statuses(uas.receive(inside.invite(), inside.addr, now=0)) == [100]
    assert len(uas.calls) == 1


def _digest(challenge: str, user: str, password: str, uri: str) -> str:
    """The client side of RFC 2617 digest with qop=auth, computed here independently."""
    scheme, params = parse_auth_params(challenge)
    assert scheme == "digest" and params["qop"] == "auth" and params["algorithm"] == "MD5"

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    realm, nonce, nc, cnonce = params["realm"], params["nonce"], "00000001", "0a4f113b"
    ha1 = md5(f"{user}:{realm}:{password}")
    ha2 = md5(f"INVITE:{uri}")
    response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
    return (
        f'Digest username="{user}", realm="{realm}", nonce="{nonce}", uri="{uri}", '
        f'response="{response}", algorithm=MD5, qop=auth, nc={nc}, cnonce="{cnonce}"'
    )


def test_digest_auth_challenge_then_success() -> None:
    uas = make_uas(auth=DigestAuth("gw.example", {"trunk": "s3cret"}))
    phone = Phone()
    (challenge,) = responses(uas.receive(phone.invite(), phone.addr, now=100.0))
    assert challenge.status == 401 and not uas.calls
    www = challenge.headers.get("WWW-Authenticate") or ""
    assert uas.receive(phone.ack(challenge), phone.addr, now=100.1) == []

    uri = "sip:agent@192.0.2.10:5060"
    phone.cseq += 1
    wrong = _digest(www, "trunk", "guess", uri)
    assert statuses(
        uas.receive(phone.invite(headers=[f"Authorization: {wrong}"]), phone.addr, now=100.2)
    ) == [401]
    phone.cseq += 1
    good = _digest(www, "trunk", "s3cret", uri)
    actions = uas.receive(phone.invite(headers=[f"Authorization: {good}"]), phone.addr, now=100.3)
    assert statuses(actions) == [100] and of_type(actions, CallOffered)


@pytest.mark.parametrize(("uri", "status"), [
    ("sip:192.0.2.10:5060", 100),  # sipp's default: host and port, no user
    ("sip:someone@192.0.2.10:5060", 100),  # the user part rewritten on the way
    ("sip:agent@192.0.2.10", 100),  # the default port
    ("sip:agent@192.0.2.99:5060", 401),  # another host
    ("sip:agent@192.0.2.10:5070", 401),  # another port
    ("sips:agent@192.0.2.10:5060", 401),  # another scheme
    ("not a uri", 401),
])
def test_digest_uri_must_name_our_host_and_port(uri: str, status: int) -> None:
    """The digest's uri is checked against the Request-URI's host and port, not its
    exact text (sipp signs `sip:host:port`; real calls failed with a 401 loop)."""
    uas = make_uas(auth=DigestAuth("gw.example", {"trunk": "s3cret"}))
    phone = Phone()
    (challenge,) = responses(uas.receive(phone.invite(), phone.addr, now=100.0))
    phone.cseq += 1
    auth = _digest(challenge.headers.get("WWW-Authenticate") or "", "trunk", "s3cret", uri)
    actions = uas.receive(phone.invite(headers=[f"Authorization: {auth}"]), phone.addr, now=100.1)
    assert statuses(actions) == [status]


def test_digest_auth_stale_nonce_is_rechallenged_with_stale_flag() -> None:
    uas = make_uas(auth=DigestAuth("gw.example", {"trunk": "s3cret"}, nonce_ttl=60))
    phone = Phone()
    (challenge,) = responses(uas.receive(phone.invite(), phone.addr, now=0.0))
    auth = _digest(challenge.headers.get("WWW-Authenticate") or "", "trunk", "s3cret",
                   "sip:agent@192.0.2.10:5060")  # fmt: skip
    phone.cseq += 1
    (again,) = responses(
        uas.receive(phone.invite(headers=[f"Authorization: {auth}"]), phone.addr, now=120.0)
    )
    assert again.status == 401 and "stale=true" in (again.headers.get("WWW-Authenticate") or "")


def test_call_limit_answers_503() -> None:
    uas = make_uas(max_calls=1)
    first, second = Phone(), Phone()
    offered(uas, first)
    (busy,) = responses(uas.receive(second.invite(), second.addr, now=0))
    assert busy.status == 503 and busy.headers.get("Retry-After")
    uas.receive(first.cancel(), first.addr, now=1)  # frees the slot
    assert statuses(uas.receive(Phone().invite(), second.addr, now=2)) == [100]


def test_no_common_codec_is_rejected_with_488() -> None:
    uas, phone = make_uas(), Phone()
    opus_only = samples.SDP_PCMU.replace("RTP/AVP 0", "RTP/AVP 96").replace(
        "a=rtpmap:0 PCMU/8000", "a=rtpmap:96 opus/48000/2"
    )
    call = offered(uas, phone, body=opus_only)
    with pytest.raises(NoCommonCodec):
        negotiate(parse_sdp(call.offer))
    actions = uas.reject(call, 488, now=0.1)
    assert statuses(actions) == [488]
    assert of_type(actions, CallEnded)[0].reason == "rejected 488"


def test_malformed_requests_get_400_or_are_dropped() -> None:
    uas, phone = make_uas(), Phone()
    bad_cseq = phone.invite().replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE")
    (resp,) = responses(uas.receive(bad_cseq, phone.addr, now=0))
    assert resp.status == 400 and "CSeq" in (resp.headers.get("Warning") or "")
    short_body = phone.invite().replace(b"Content-Length: ", b"Content-Length: 9")
    assert statuses(uas.receive(short_body, phone.addr, now=0)) == [400]
    mismatch = phone.invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE")
    assert statuses(uas.receive(mismatch, phone.addr, now=0)) == [400]
    assert uas.receive(b"\x00\xffgarbage\r\n\r\n", phone.addr, now=0) == []
    assert uas.receive(b"\r\n\r\n", phone.addr, now=0) == []  # keep-alive
    assert uas.receive(b"ACK sip:x SIP/2.0\r\nCSeq: x\r\n\r\n", phone.addr, now=0) == []
    assert not uas.calls


def test_hangup_sends_bye_with_dialog_headers_and_route() -> None:
    uas, phone = make_uas(), Phone()
    rr = ["Record-Route: <sip:proxy1.example.com;lr>", "Record-Route: <sip:10.0.0.1;lr>"]
    actions = uas.receive(phone.invite(headers=rr), phone.addr, now=0)
    call = of_type(actions, CallOffered)[0].call
    (ok,) = responses(uas.answer(call, ANSWER_SDP, now=0))
    assert ok.headers.get_all("Record-Route") == [
        "<sip:proxy1.example.com;lr>",
        "<sip:10.0.0.1;lr>",
    ]
    uas.receive(phone.ack(ok), phone.addr, now=0.1)
    actions = uas.hangup(call, now=5)
    assert of_type(actions, CallEnded)[0].reason == "local hangup"
    (bye,) = sent(actions)
    assert isinstance(bye, SipRequest) and bye.method == "BYE"
    assert bye.uri == f"sip:phone@{phone.addr[0]}:{phone.addr[1]}"
    assert bye.headers.get_all("Route") == ["<sip:proxy1.example.com;lr>", "<sip:10.0.0.1;lr>"]
    assert bye.from_addr.tag == call.local_tag and bye.to_addr.tag == phone.tag
    assert bye.cseq == (call.local_cseq, "BYE") and bye.top_via.branch.startswith("z9hG4bK")
    assert uas.receive(Phone.respond(bye, 200), phone.addr, now=5.05) == []
    assert [a for _, a in run_until(uas, 100) if isinstance(a, Send)] == []
    assert uas.hangup(call, now=6) == []


def test_hangup_before_ack_defers_bye_until_ack() -> None:
    uas, phone = make_uas(), Phone()
    call = offered(uas, phone)
    (ok,) = responses(uas.answer(call, ANSWER_SDP, now=0))
    actions = uas.hangup(call, now=0.1)
    assert of_type(actions, CallEnded) and sent(actions) == []
    actions = uas.receive(phone.ack(ok), phone.addr, now=0.2)
    assert [m.method for m in sent(actions)] == ["BYE"]  # type: ignore[union-attr]


def test_hangup_before_answer_rejects_with_480() -> None:
    uas, phone = make_uas(), Phone()
    call = offered(uas, phone)
    actions = uas.hangup(call, now=1)
    assert statuses(actions) == [480] and of_type(actions, CallEnded)


def test_retransmitted_bye_is_answered_again_but_ends_once() -> None:
    uas, phone = make_uas(), Phone()
    confirmed(uas, phone)
    bye = phone.in_dialog("BYE", branch="z9hG4bK-bye-x")
    first = uas.receive(bye, phone.addr, now=1)
    second = uas.receive(bye, phone.addr, now=1.5)
    assert statuses(first) == statuses(second) == [200]
    assert len(of_type(first, CallEnded)) == 1 and of_type(second, CallEnded) == []


def test_info_dtmf_relay_reaches_the_app() -> None:
    uas, phone = make_uas(), Phone()
    call = confirmed(uas, phone)
    raw = phone.in_dialog(
        "INFO", body=b"Signal=7\r\nDuration=160\r\n", content_type="application/dtmf-relay"
    )
    actions = uas.receive(raw, phone.addr, now=3)
    assert statuses(actions) == [200]
    assert [(d.call, d.digit) for d in of_type(actions, DtmfReceived)] == [(call, "7")]


def test_required_extension_we_lack_gets_420() -> None:
    uas, phone = make_uas(), Phone()
    (resp,) = responses(uas.receive(phone.invite(headers=["Require: 100rel"]), phone.addr, now=0))
    assert resp.status == 420 and resp.headers.get("Unsupported") == "100rel"


def test_tcp_call_has_tcp_contact_and_no_non_2xx_retransmission() -> None:
    uas, phone = make_uas(), Phone(transport="TCP")
    actions = uas.receive(phone.invite(), phone.addr, now=0, transport="tcp")
    call = of_type(actions, CallOffered)[0].call
    assert call.transport == "TCP"
    actions = uas.reject(call, 486, now=0.1)
    assert statuses(actions) == [486] and actions[0].transport == "TCP"  # type: ignore[union-attr]
    assert [a for _, a in run_until(uas, 100) if isinstance(a, Send)] == []


def test_responses_carry_received_and_rport_for_nat() -> None:
    uas = make_uas()
    raw = samples.baresip_invite()
    src = ("203.0.113.50", 61000)  # the phone is behind NAT: not where its Via says
    actions = uas.receive(raw, src, now=0)
    (trying,) = responses(actions)
    via = trying.top_via
    assert via.params["rport"] == "61000" and via.params["received"] == "203.0.113.50"
    assert actions[0].addr == src  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "raw", [samples.sipp_invite(), samples.baresip_invite(), samples.asterisk_invite()]
)
def test_real_peer_invites_are_offered_and_answerable(raw: bytes) -> None:
    uas = make_uas()
    actions = uas.receive(raw, ("10.0.0.5", 5060), now=0)
    call = of_type(actions, CallOffered)[0].call
    offer = parse_sdp(call.offer)
    answer = build_answer(offer, negotiate(offer), "192.0.2.10", 40000)
    (ok,) = responses(uas.answer(call, answer, now=0.1))
    assert ok.status == 200 and parse_message(ok.to_bytes()) == ok
    if b"X-Customer-Id" in raw:
        assert call.context()["x_headers"] == {"X-Customer-Id": "acme-42", "X-Campaign": "spring"}


def test_repeated_wrong_passwords_block_the_source_for_a_while() -> None:
    """A password guesser gets 401s, then 403 without a challenge once it has failed five
    times in a minute, for five minutes; another source is unaffected; a missing
    Authorization (every client's first INVITE) is not a failure."""
    uas = make_uas(auth=DigestAuth("gw.example", {"trunk": "s3cret"}))
    guesser, honest = Phone(("198.51.100.7", 5060)), Phone(("203.0.113.9", 5060))
    uri = "sip:agent@192.0.2.10:5060"
    now = 10.0
    for _ in range(3):  # no credentials: challenged, never counted
        (ch,) = responses(uas.receive(guesser.invite(), guesser.addr, now=now))
        assert ch.status == 401
        guesser.cseq += 1
    www = ch.headers.get("WWW-Authenticate") or ""
    got = []
    for i in range(6):
        wrong = _digest(www, "trunk", f"guess{i}", uri)
        (r,) = responses(uas.receive(guesser.invite(headers=[f"Authorization: {wrong}"]),
                                     guesser.addr, now=now + i))
        got.append(r.status)
        guesser.cseq += 1
    assert got == [401, 401, 401, 401, 403, 403]
    right = _digest(www, "trunk", "s3cret", uri)  # even the right password, while blocked
    (r,) = responses(uas.receive(guesser.invite(headers=[f"Authorization: {right}"]),
                                 guesser.addr, now=now + 60))
    assert r.status == 403 and not uas.calls
    (ch2,) = responses(uas.receive(honest.invite(), honest.addr, now=now + 60))
    assert ch2.status == 401  # another source: challenged as usual
    honest.cseq += 1
    good = _digest(ch2.headers.get("WWW-Authenticate") or "", "trunk", "s3cret", uri)
    actions = uas.receive(honest.invite(headers=[f"Authorization: {good}"]), honest.addr,
                          now=now + 61)
    assert statuses(actions) == [100]
    later = now + 4 + 300  # the block is over
    guesser.cseq += 1
    (ch3,) = responses(uas.receive(guesser.invite(), guesser.addr, now=later))
    assert ch3.status == 401
    guesser.cseq += 1
    fresh = _digest(ch3.headers.get("WWW-Authenticate") or "", "trunk", "s3cret", uri)
    actions = uas.receive(guesser.invite(headers=[f"Authorization: {fresh}"]), guesser.addr,
                          now=later + 1)
    assert statuses(actions) == [100]


def test_garbage_is_logged_ten_times_a_minute_then_summed_up(caplog) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.sip.uas")
    uas = make_uas()
    for i in range(50):
        assert uas.receive(b"\x00garbage\r\n\x1b[2K", ("198.51.100.7", 5060), now=i * 0.1) == []
    shown = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(shown) == 10 and all("\\x00" in r.getMessage() for r in shown)
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 40
    # the summary comes when the minute is up, even if nothing else arrives
    deadline = uas.next_deadline()
    assert deadline is not None and deadline == pytest.approx(60.0)
    uas.on_timer(deadline)
    assert caplog.records[-1].getMessage().startswith("40 more malformed or refused SIP")
    caplog.clear()
    uas.receive(b"\x00again", ("198.51.100.7", 5060), now=61.0)  # a new minute: shown
    assert [r.levelno for r in caplog.records] == [logging.INFO]


def _digest_nc(nonce: str, nc: str, qop: bool = True) -> str:
    """A correct response for user trunk / s3cret with count `nc` (or no qop at all)."""
    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    uri = "sip:agent@192.0.2.10:5060"
    ha1, ha2 = md5("trunk:gw.example:s3cret"), md5(f"INVITE:{uri}")
    if not qop:
        return (f'Digest username="trunk", realm="gw.example", nonce="{nonce}", uri="{uri}", '
                f'response="{md5(f"{ha1}:{nonce}:{ha2}")}"')
    response = md5(f"{ha1}:{nonce}:{nc}:c1:auth:{ha2}")
    return (f'Digest username="trunk", realm="gw.example", nonce="{nonce}", uri="{uri}", '
            f'response="{response}", qop=auth, nc={nc}, cnonce="c1"')


def test_digest_nc_must_grow_and_a_qopless_nonce_is_used_once() -> None:
    auth = DigestAuth("gw.example", {"trunk": "s3cret"}, nonce_ttl=60)
    nonce = auth.make_nonce(10.0)
    uri = "sip:agent@192.0.2.10:5060"
    check = lambda header, now=11.0: auth.check("INVITE", header, now, request_uri=uri)  # noqa: E731
    assert check(_digest_nc(nonce, "00000001")) == "ok"
    assert check(_digest_nc(nonce, "00000001")) == "replay"  # the same header again
    assert check(_digest_nc(nonce, "00000003")) == "ok"  # counting on (gaps allowed)
    assert check(_digest_nc(nonce, "00000002")) == "replay"  # lower than the highest
    assert check(_digest_nc(nonce, "00000000")) == "replay"  # counts start at 1
    other = auth.make_nonce(10.5)
    assert check(_digest_nc(other, "", qop=False)) == "ok"
    assert check(_digest_nc(other, "", qop=False)) == "replay"
    # a wrong password never spends a nonce: the genuine first use still works
    fresh = auth.make_nonce(10.8)
    wrong = _digest_nc(fresh, "00000001").replace('response="', 'response="0', 1)
    assert check(wrong) == "fail"
    assert check(_digest_nc(fresh, "00000001")) == "ok"
    # used nonces are forgotten once expired (an expired nonce is stale anyway)
    assert check(_digest_nc(nonce, "00000009"), 75.0) == "stale"
    check(_digest_nc(auth.make_nonce(80.0), "00000001"), 80.5)
    assert nonce not in auth._used and other not in auth._used


def test_a_replayed_authorization_gets_401_and_starts_no_call() -> None:
    uas = make_uas(auth=DigestAuth("gw.example", {"trunk": "s3cret"}))
    phone = Phone()
    (challenge,) = responses(uas.receive(phone.invite(), phone.addr, now=100.0))
    phone.cseq += 1
    good = _digest(challenge.headers.get("WWW-Authenticate") or "", "trunk", "s3cret",
                   "sip:agent@192.0.2.10:5060")
    actions = uas.receive(phone.invite(headers=[f"Authorization: {good}"]), phone.addr, now=100.1)
    assert of_type(actions, CallOffered)
    thief = Phone(("10.9.9.9", 5099))  # another host and port, its own Call-ID
    actions = uas.receive(thief.invite(headers=[f"Authorization: {good}"]), thief.addr, now=100.2)
    assert statuses(actions) == [401] and not of_type(actions, CallOffered)
    assert len(uas.calls) == 1
