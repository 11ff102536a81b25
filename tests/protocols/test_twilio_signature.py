"""X-Twilio-Signature: our checker against signatures made by the `twilio` library."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from twilio.request_validator import RequestValidator

from gateway.protocols import twilio_signature, validate_twilio_signature

TOKEN = "12345678901234567890123456789012"
WEBHOOK = "https://gw.example.com/twilio/voice"
FORM = {
    "CallSid": "CA1234567890ABCDE",
    "Caller": "+12349013030",
    "Digits": "1234",
    "From": "+12349013030",
    "To": "+18005551212",
}
twilio = RequestValidator(TOKEN)


def test_valid_webhook_signature_is_accepted() -> None:
    sig = twilio.compute_signature(WEBHOOK, FORM)
    assert validate_twilio_signature(TOKEN, WEBHOOK, FORM, sig)
    assert twilio_signature(TOKEN, WEBHOOK, FORM) == sig


def test_tampered_requests_are_rejected() -> None:
    sig = twilio.compute_signature(WEBHOOK, FORM)
    assert not validate_twilio_signature(TOKEN, WEBHOOK, {**FORM, "Digits": "9999"}, sig)
    assert not validate_twilio_signature(TOKEN, WEBHOOK, {**FORM, "Extra": "1"}, sig)
    assert not validate_twilio_signature(TOKEN, WEBHOOK + "?x=1", FORM, sig)
    assert not validate_twilio_signature(TOKEN, WEBHOOK.replace("gw.", "evil."), FORM, sig)
    assert not validate_twilio_signature("another-token", WEBHOOK, FORM, sig)
    flipped = ("A" if sig[0] != "A" else "B") + sig[1:]
    assert not validate_twilio_signature(TOKEN, WEBHOOK, FORM, flipped)
    assert not validate_twilio_signature(TOKEN, WEBHOOK, FORM, "")
    assert not validate_twilio_signature(TOKEN, WEBHOOK, FORM, None)


def test_websocket_upgrade_get_has_no_body_params() -> None:
    url = "wss://gw.example.com/twilio/stream?call=CA123&agent=demo"
    sig = twilio.compute_signature(url, {})
    assert validate_twilio_signature(TOKEN, url, None, sig)
    assert validate_twilio_signature(TOKEN, url, {}, sig)
    assert not validate_twilio_signature(TOKEN, url.replace("demo", "other"), None, sig)
    assert not validate_twilio_signature(TOKEN, url, {"x": "1"}, sig)


def test_url_port_forms_are_both_accepted_like_the_library() -> None:
    sig_without = twilio.compute_signature(WEBHOOK, FORM)
    with_port = "https://gw.example.com:443/twilio/voice"
    assert twilio.validate(with_port, FORM, sig_without)
    assert validate_twilio_signature(TOKEN, with_port, FORM, sig_without)
    sig_with = twilio.compute_signature(with_port, FORM)
    assert twilio.validate(WEBHOOK, FORM, sig_with)
    assert validate_twilio_signature(TOKEN, WEBHOOK, FORM, sig_with)
    ws_port = "wss://gw.example.com:443/twilio/stream"
    assert validate_twilio_signature(
        TOKEN, "wss://gw.example.com/twilio/stream", None, twilio.compute_signature(ws_port, {})
    )


class MultiDict(dict):
    """What a web framework hands over for repeated form fields."""

    def getall(self, key: str) -> list[str]:
        return self[key]


def test_repeated_form_fields() -> None:
    form = MultiDict({"To": ["+1", "+3", "+2"], "From": ["+9"]})
    sig = twilio.compute_signature(WEBHOOK, form)
    assert validate_twilio_signature(TOKEN, WEBHOOK, {"To": ["+2", "+1", "+3"], "From": "+9"}, sig)
    pairs = [("To", "+1"), ("From", "+9"), ("To", "+3"), ("To", "+2")]
    assert validate_twilio_signature(TOKEN, WEBHOOK, pairs, sig)
    assert not validate_twilio_signature(TOKEN, WEBHOOK, pairs[:3], sig)


def test_json_body_with_body_sha256() -> None:
    body = '{"CallSid":"CA1","From":"+1"}'
    url = WEBHOOK + "?bodySHA256=" + hashlib.sha256(body.encode()).hexdigest()
    sig = twilio.compute_signature(url, {})
    assert twilio.validate(url, body, sig)
    assert validate_twilio_signature(TOKEN, url, None, sig, body=body)
    assert validate_twilio_signature(TOKEN, url, None, sig, body=body.encode())
    assert not validate_twilio_signature(TOKEN, url, None, sig, body=body + " ")
    assert not validate_twilio_signature(TOKEN, url, None, sig)


def test_garbage_never_raises() -> None:
    assert not validate_twilio_signature(TOKEN, "http://[::1", FORM, "abc")
    assert not validate_twilio_signature(TOKEN, "https://h:99999/x", FORM, "abc")
    assert not validate_twilio_signature(TOKEN, WEBHOOK, {"a": 1}, "abc")  # type: ignore[dict-item]
    assert not validate_twilio_signature(TOKEN, WEBHOOK, FORM, 12)  # type: ignore[arg-type]


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@settings(max_examples=200, deadline=None)
@given(
    token=text.filter(bool),
    path=st.text("abcxyz/-_", max_size=15),
    params=st.dictionaries(text, text, max_size=6),
)
def test_agrees_with_request_validator(token: str, path: str, params: dict[str, str]) -> None:
    url = f"https://gw.example.com/{path}"
    lib = RequestValidator(token)
    sig = lib.compute_signature(url, params)
    assert validate_twilio_signature(token, url, params, sig)
    other = lib.compute_signature(url + "x", params)
    assert validate_twilio_signature(token, url, params, other) == lib.validate(url, params, other)
