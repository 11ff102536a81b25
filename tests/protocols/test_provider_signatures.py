"""Telnyx, Plivo and Vonage webhook signatures: our checkers against signatures made by
the providers' official Python libraries where they have one that makes them (Plivo's
`plivo.utils.signature_v3`; Vonage's tokens are made with PyJWT, the library Vonage's own
`vonage_jwt.verify_signature` checks them with, and that verifier must agree). Telnyx's
official library does not install offline with a signing helper, so its scheme (Ed25519
over `timestamp|body`) is signed here with `cryptography`, as Telnyx documents it."""

from __future__ import annotations

import base64
import hashlib
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st
from plivo.utils.signature_v3 import (
    construct_get_url,
    construct_post_url,
    get_signature_v3,
    validate_v3_signature,
)
from vonage_jwt import verify_signature as vonage_verify

from gateway.protocols.provider_signatures import (
    plivo_v3_signature,
    validate_plivo_v3,
    verify_telnyx_signature,
    verify_vonage_jwt,
)

NOW = 1_760_000_000.0

# ------------------------------------------------------------------------------ Telnyx


def telnyx_keys() -> tuple[Ed25519PrivateKey, str]:
    private = Ed25519PrivateKey.generate()
    public = private.public_key().public_bytes(serialization.Encoding.Raw,
                                               serialization.PublicFormat.Raw)
    return private, base64.b64encode(public).decode()


def telnyx_sign(private: Ed25519PrivateKey, timestamp: str, body: bytes) -> str:
    return base64.b64encode(private.sign(timestamp.encode() + b"|" + body)).decode()


def test_telnyx_signature_accepted_and_tampering_refused() -> None:
    private, public = telnyx_keys()
    body = b"CallSid=v3%3Aabc&From=%2B15551234567&To=%2B15557654321"
    stamp = str(int(NOW))
    sig = telnyx_sign(private, stamp, body)
    assert verify_telnyx_signature(public, sig, stamp, body, NOW)
    assert verify_telnyx_signature(public, sig, stamp, body, NOW + 299)
    assert not verify_telnyx_signature(public, sig, stamp, body, NOW + 301)  # replayed late
    assert not verify_telnyx_signature(public, sig, stamp, body + b"&x=1", NOW)
    assert not verify_telnyx_signature(public, sig, str(int(NOW) + 1), body, NOW)
    assert not verify_telnyx_signature(telnyx_keys()[1], sig, stamp, body, NOW)  # another key
    for bad in (None, "", "not base64!", "ñ" * 10, base64.b64encode(b"x" * 64).decode()):
        assert not verify_telnyx_signature(public, bad, stamp, body, NOW)
    for stamp_bad in (None, "", "12a", "١٢٣", "-5"):
        assert not verify_telnyx_signature(public, sig, stamp_bad, body, NOW)


# ------------------------------------------------------------------------------ Plivo

PLIVO_TOKEN = "MjM0NTY3ODkwYWJjZGVmMTIzNDU2Nzg5MGFiY2Rl"
ANSWER = "https://gw.example.com/plivo/answer"


@pytest.mark.parametrize(("method", "url", "params"), [
    ("POST", ANSWER, {"CallUUID": "abc-123", "From": "+15551234567", "To": "+15557654321"}),
    ("POST", ANSWER + "?b=2&a=1", {"CallUUID": "abc", "Direction": "inbound"}),
    ("POST", ANSWER, {}),
    ("GET", ANSWER + "?CallUUID=abc&From=%2B1555", {}),
    ("GET", ANSWER, {}),
])
def test_plivo_v3_matches_the_plivo_library(method: str, url: str,
                                            params: dict[str, str]) -> None:
    nonce = "05429567804466091622"
    theirs = get_signature_v3(PLIVO_TOKEN.encode(), (
        construct_get_url(url, dict(params)) if method == "GET"
        else construct_post_url(url, dict(params))).decode(), nonce.encode()).decode()
    ours = plivo_v3_signature(PLIVO_TOKEN, method, url, params if method == "POST" else None,
                              nonce)
    assert ours == theirs
    assert validate_v3_signature(method, url, nonce, PLIVO_TOKEN, ours, dict(params))
    form = params if method == "POST" else None
    assert validate_plivo_v3(PLIVO_TOKEN, method, url, form, nonce, f"other=,{ours}")
    assert not validate_plivo_v3(PLIVO_TOKEN, method, url, form, nonce + "1", ours)
    assert not validate_plivo_v3("another-token", method, url, form, nonce, ours)
    assert not validate_plivo_v3(PLIVO_TOKEN, method, url.replace("gw.", "evil."), form, nonce,
                                 ours)
    assert not validate_plivo_v3(PLIVO_TOKEN, method, url, form, None, ours)
    assert not validate_plivo_v3(PLIVO_TOKEN, method, url, form, nonce, None)


@settings(max_examples=200, deadline=None)
@given(params=st.dictionaries(st.text("abcdefXYZ_", min_size=1, max_size=8),
                              st.text(max_size=12), max_size=6),
       nonce=st.text("0123456789", min_size=1, max_size=20))
def test_plivo_v3_agrees_with_the_library_on_any_form(params: dict[str, str],
                                                      nonce: str) -> None:
    ours = plivo_v3_signature(PLIVO_TOKEN, "POST", ANSWER, params, nonce)
    assert validate_v3_signature("POST", ANSWER, nonce, PLIVO_TOKEN, ours, dict(params))
    if params:
        tampered = {**params, next(iter(params)): next(iter(params.values())) + "x"}
        assert not validate_plivo_v3(PLIVO_TOKEN, "POST", ANSWER, tampered, nonce, ours)


# ------------------------------------------------------------------------------ Vonage

VONAGE_SECRET = "vonage-signature-secret-0123456789abcdef"


def vonage_token(body: bytes = b"", iat: float = NOW, secret: str = VONAGE_SECRET,
                 alg: str = "HS256", **claims: object) -> str:
    """A signed-webhook token as Vonage makes one (its claims as documented)."""
    payload: dict[str, object] = {"iat": int(iat), "jti": "a1b2c3", "iss": "Vonage",
                                  "api_key": "abcd1234", "application_id": "app-1", **claims}
    if body:
        payload["payload_hash"] = hashlib.sha256(body).hexdigest()
    return jwt.encode(payload, secret, algorithm=alg)


def test_vonage_jwt_accepted_as_vonage_verifies_it() -> None:
    body = b'{"uuid": "abc", "status": "answered"}'
    token = vonage_token(body)
    assert vonage_verify(token, VONAGE_SECRET)  # Vonage's own verifier agrees
    claims = verify_vonage_jwt(VONAGE_SECRET, f"Bearer {token}", body, NOW)
    assert claims is not None and claims["application_id"] == "app-1"
    assert verify_vonage_jwt(VONAGE_SECRET, f"Bearer {vonage_token()}", b"", NOW + 200)


def test_vonage_jwt_refused_when_wrong() -> None:
    body = b'{"uuid": "abc"}'
    token = vonage_token(body)
    assert not vonage_verify(token, "another-signature-secret-0123456789abcdef")
    assert verify_vonage_jwt("another-signature-secret-0123456789abcdef", f"Bearer {token}", body, NOW) is None
    assert verify_vonage_jwt(VONAGE_SECRET, f"Bearer {token}", b'{"uuid": "xyz"}', NOW) is None
    assert verify_vonage_jwt(VONAGE_SECRET, f"Bearer {token}", body, NOW + 301) is None
    assert verify_vonage_jwt(VONAGE_SECRET, f"Bearer {vonage_token()}", body, NOW) is None
    expired = vonage_token(exp=int(NOW) - 1)
    assert verify_vonage_jwt(VONAGE_SECRET, f"Bearer {expired}", b"", NOW) is None
    none_alg = jwt.encode({"iat": int(NOW)}, None, algorithm="none")
    for header in (None, "", token, f"Basic {token}", f"Bearer {none_alg}",
                   "Bearer a.b.c", "Bearer ñ.ñ.ñ", f"Bearer {token}x",
                   "Bearer " + base64.urlsafe_b64encode(b"[" * 5000).decode() + ".e30.e30"):
        assert verify_vonage_jwt(VONAGE_SECRET, header, b"", NOW) is None, header


def test_vonage_jwt_with_a_real_clock() -> None:
    """The tokens PyJWT makes now pass with the wall clock (no fixed times)."""
    now = time.time()
    token = vonage_token(iat=now)
    assert verify_vonage_jwt(VONAGE_SECRET, f"Bearer {token}", b"", now) is not None


# ------------------------------------------------------------------------------ any input

any_text = st.text(max_size=300) | st.sampled_from(["9" * 5000, "1e999", "-0", "١٢٣"])


@settings(max_examples=300, deadline=None)
@given(signature=st.none() | any_text, timestamp=st.none() | any_text,
       body=st.binary(max_size=200))
def test_telnyx_check_answers_any_headers(signature: str | None, timestamp: str | None,
                                          body: bytes) -> None:
    assert verify_telnyx_signature(telnyx_keys()[1], signature, timestamp, body, NOW) is False


@settings(max_examples=300, deadline=None)
@given(header=st.none() | any_text, claims=st.dictionaries(
    st.sampled_from(["iat", "exp", "payload_hash", "jti"]),
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
    | st.just(10**400)), body=st.binary(max_size=50))
def test_vonage_check_answers_any_token(header: str | None, claims: dict[str, object],
                                        body: bytes) -> None:
    """Garbage headers, and genuinely signed tokens with claims of any type (numbers too
    big for a float among them): None or claims, never an exception."""
    assert verify_vonage_jwt(VONAGE_SECRET, header, body, NOW) is None
    token = jwt.encode(claims, VONAGE_SECRET, algorithm="HS256")
    verify_vonage_jwt(VONAGE_SECRET, f"Bearer {token}", body, NOW)


@settings(max_examples=200, deadline=None)
@given(header=st.none() | any_text, nonce=st.none() | any_text,
       params=st.dictionaries(any_text, any_text, max_size=4))
def test_plivo_check_answers_any_headers(header: str | None, nonce: str | None,
                                         params: dict[str, str]) -> None:
    assert validate_plivo_v3(PLIVO_TOKEN, "POST", ANSWER, params, nonce, header) is False
