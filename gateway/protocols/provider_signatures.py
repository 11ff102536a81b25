"""Checking the webhook signatures of Telnyx, Plivo and Vonage (Twilio's are in
`twilio_signature`). Sans-I/O: the request's parts and the time in, True or False out.

- **Telnyx** (Ed25519, https://developers.telnyx.com/docs/messaging/messages/receiving-webhooks,
  "Webhook signing"): the headers `telnyx-signature-ed25519` (base64 signature) and
  `telnyx-timestamp` (Unix seconds); the signed bytes are `f"{timestamp}|"` followed by the
  raw request body; the key is the account's public key (base64, from the portal). A
  timestamp more than `tolerance` seconds away from now is refused (a replay).
- **Plivo** (V3, https://www.plivo.com/docs/voice/concepts/signature-validation): the
  headers `X-Plivo-Signature-V3` (one or more base64 signatures, comma-separated) and
  `X-Plivo-Signature-V3-Nonce`. The signed text is the URL Plivo requested, rebuilt: scheme,
  host and path, then `?` and its query parameters sorted by name as `name=value` joined
  by `&`; for a POST with form parameters, `?` always, the sorted query (followed by `.`
  when there is one), then the form parameters sorted by name as `namevalue` with no
  separators; then `.` and the nonce. HMAC-SHA256 with the auth token, base64.
- **Vonage** (signed webhooks, https://developer.vonage.com/en/getting-started/concepts/webhooks#validating-signed-webhooks):
  `Authorization: Bearer <JWT>`, HS256 with the account's signature secret. Its claims
  include `iat` and, for a request with a body, `payload_hash`: the hex SHA-256 of the body,
  which must match. A token issued more than `tolerance` seconds away from now is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "plivo_v3_signature",
    "validate_plivo_v3",
    "verify_telnyx_signature",
    "verify_vonage_jwt",
]

TOLERANCE_S = 300.0  # how far a signed timestamp may be from now


# ------------------------------------------------------------------------------ Telnyx


def verify_telnyx_signature(public_key: str, signature: str | None, timestamp: str | None,
                            body: bytes, now: float, tolerance: float = TOLERANCE_S) -> bool:
    """True when `signature` (base64) is Telnyx's Ed25519 signature of
    `timestamp|body` under `public_key` (base64, 32 bytes) and the timestamp is recent."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if (not signature or not timestamp or len(timestamp) > 12 or not timestamp.isascii()
            or not timestamp.isdigit()):
        return False
    if abs(now - int(timestamp)) > tolerance:
        return False
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key, validate=True))
        raw = base64.b64decode(signature.encode("ascii", "replace"), validate=True)
    except (ValueError, binascii.Error):
        return False
    try:
        key.verify(raw, timestamp.encode("ascii") + b"|" + body)
    except InvalidSignature:
        return False
    return True


# ------------------------------------------------------------------------------ Plivo

Params = Mapping[str, str | Sequence[str]]


def _values(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else sorted(value)


def _plivo_base(method: str, url: str, params: Params | None) -> str:
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}{parts.path}"
    query: dict[str, list[str]] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(name, []).append(value)
    form = dict(params or {})
    if method.upper() == "GET":
        for name, value in form.items():
            query.setdefault(name, []).extend(_values(value))
        form = {}
    sorted_query = "&".join(f"{name}={value}" for name in sorted(query)
                            for value in sorted(query[name]))
    if not form:
        return base + (f"?{sorted_query}" if sorted_query else "")
    text = base + "?" + (f"{sorted_query}." if sorted_query else "")
    return text + "".join(name + value for name in sorted(form)
                          for value in _values(form[name]))


def plivo_v3_signature(auth_token: str, method: str, url: str, params: Params | None,
                       nonce: str) -> str:
    """The `X-Plivo-Signature-V3` Plivo sends for this request."""
    text = f"{_plivo_base(method, url, params)}.{nonce}"
    digest = hmac.new(auth_token.encode(), text.encode("utf-8", "surrogateescape"),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_plivo_v3(auth_token: str, method: str, url: str, params: Params | None,
                      nonce: str | None, header: str | None) -> bool:
    """True when one of the comma-separated signatures in `header` is right."""
    if not header or not nonce:
        return False
    expected = plivo_v3_signature(auth_token, method, url, params, nonce).encode()
    return any(hmac.compare_digest(expected, given.strip().encode("utf-8", "surrogateescape"))
               for given in header.split(","))


# ------------------------------------------------------------------------------ Vonage


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _number(value: Any) -> float | None:
    """A JSON number claim as a float (None: not a number, or too big for one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def verify_vonage_jwt(secret: str, authorization: str | None, body: bytes, now: float,
                      tolerance: float = TOLERANCE_S) -> dict[str, Any] | None:
    """The claims of a valid Vonage signed-webhook token in `authorization` (`Bearer
    <JWT>`, HS256 under `secret`, recent `iat`, `payload_hash` matching a non-empty
    `body`), else None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or token.count(".") != 2 or not token.isascii():
        return None
    head_b64, claims_b64, sig_b64 = token.strip().split(".")
    try:
        header = json.loads(_b64url(head_b64))
        claims = json.loads(_b64url(claims_b64))
        signature = _b64url(sig_b64)
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(
            claims, dict):
        return None
    expected = hmac.new(secret.encode(), f"{head_b64}.{claims_b64}".encode(),
                        hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        return None
    iat, exp = _number(claims.get("iat")), _number(claims.get("exp"))
    if iat is None or not abs(now - iat) <= tolerance:
        return None
    if exp is not None and not now <= exp:
        return None
    if body:
        digest = hashlib.sha256(body).hexdigest()
        given = claims.get("payload_hash")
        if not isinstance(given, str) or not hmac.compare_digest(digest, given.lower()):
            return None
    return claims
