"""Checking Twilio's `X-Twilio-Signature` on webhooks and on the Media Streams WebSocket upgrade.

The scheme (https://www.twilio.com/docs/usage/security#validating-requests): take the full URL
Twilio requested; for a form POST append every parameter as name followed by value, names in
sorted order (a repeated name contributes each of its values, sorted); HMAC-SHA1 that string
with the account's auth token; base64 the digest. A GET, such as the WebSocket upgrade, has no
body parameters, so the URL (with its query string) is signed alone. JSON bodies carry a
`bodySHA256` query parameter with the hex SHA-256 of the body, and only the URL is signed.
Twilio may have signed the URL with or without the default port, so both forms are tried.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit, urlunsplit

__all__ = ["twilio_signature", "validate_twilio_signature"]

Params = Mapping[str, str | Sequence[str]] | Iterable[tuple[str, str]] | None

_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def twilio_signature(auth_token: str, url: str, params: Params = None) -> str:
    """The signature Twilio would send for a request to `url` with form `params`."""
    text = url + "".join(name + value for name, value in _sorted_pairs(params))
    digest = hmac.new(auth_token.encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def validate_twilio_signature(
    auth_token: str,
    url: str,
    params: Params,
    signature: str | None,
    *,
    body: str | bytes | None = None,
) -> bool:
    """True when `signature` is Twilio's signature of this request. Never raises on bad input.

    `params`: the form fields of a POST (a dict, a dict of lists, or (name, value) pairs);
    None or {} for a GET such as the WebSocket upgrade. `body`: the raw body of a JSON POST,
    checked against the URL's `bodySHA256`."""
    if not isinstance(signature, str) or not signature or not isinstance(auth_token, str):
        return False
    try:
        query = parse_qs(urlsplit(url).query)
        if "bodySHA256" in query:
            if body is None:
                return False
            raw = body.encode() if isinstance(body, str) else body
            if not hmac.compare_digest(hashlib.sha256(raw).hexdigest(), query["bodySHA256"][0]):
                return False
            params = None
        for candidate in _url_variants(url):
            expected = twilio_signature(auth_token, candidate, params)
            if hmac.compare_digest(expected.encode(), signature.encode()):
                return True
        return False
    except (TypeError, ValueError, UnicodeError):
        return False


def _sorted_pairs(params: Params) -> list[tuple[str, str]]:
    if not params:
        return []
    grouped: dict[str, set[str]] = {}
    items = params.items() if isinstance(params, Mapping) else params
    for name, value in items:
        values = [value] if isinstance(value, str) else list(value)
        for v in values:
            if not isinstance(name, str) or not isinstance(v, str):
                raise TypeError("signature parameters must be strings")
            grouped.setdefault(name, set()).add(v)
    return [(name, v) for name in sorted(grouped) for v in sorted(grouped[name])]


def _url_variants(url: str) -> list[str]:
    """The URL as given, without its port, and with the scheme's default port."""
    parts = urlsplit(url)
    variants = [url]
    host = parts.hostname
    if host is None:
        return variants
    userinfo = parts.netloc.rpartition("@")[0]
    prefix = userinfo + "@" if userinfo else ""
    bracketed = f"[{host}]" if ":" in host else host
    if parts.port is not None:
        variants.append(urlunsplit(parts._replace(netloc=prefix + bracketed)))
    elif parts.scheme in _DEFAULT_PORTS:
        netloc = f"{prefix}{bracketed}:{_DEFAULT_PORTS[parts.scheme]}"
        variants.append(urlunsplit(parts._replace(netloc=netloc)))
    return variants
