"""Admission for SIP requests: a source-address allowlist and digest authentication.

`AddressAllowlist` checks a source IP against CIDRs (IPv4 and IPv6, via `ipaddress`).
`DigestAuth` challenges with `WWW-Authenticate: Digest` (RFC 2617 / RFC 7616, MD5,
qop=auth or none) and verifies `Authorization`. Nonces are stateless: an injected
time plus an HMAC over it with a per-process secret, valid for `nonce_ttl` seconds;
an expired but genuine nonce gets a fresh challenge with `stale=true`.

Replays: a nonce that has been used is remembered for the rest of its life with the
highest `nc` accepted under it. A response with qop=auth must carry a higher `nc` than
the last one accepted for its nonce (RFC 7616 3.4.5: a repeated or smaller count is a
replay); a response without qop (RFC 2069, no counter) may use its nonce once. So a
captured `Authorization` header, sent again (with a new Call-ID, from another port or
another host), is refused ('replay'), and the response covers `nc`, so a replayer cannot
raise it without the password. Only verified responses are remembered: a guess cannot
spend somebody's nonce.

The digest's `uri` must name the Request-URI's host and port; its user part may
differ or be missing (sipp, for one, signs `sip:host:port` by default, and a proxy
may rewrite the user part of the Request-URI after the client signed it).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from gateway.sip.message import SipParseError, parse_uri

__all__ = ["AddressAllowlist", "DigestAuth", "parse_auth_params", "same_target"]


class AddressAllowlist:
    """`allows(ip)` is True when `ip` falls in one of the networks (all, if None)."""

    def __init__(self, cidrs: Iterable[str] | None) -> None:
        self.networks = (
            None
            if cidrs is None
            else [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs]
        )

    def allows(self, host: str) -> bool:
        if self.networks is None:
            return True
        try:
            addr = ipaddress.ip_address(host.strip("[]").split("%")[0])
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr.version == net.version and addr in net for net in self.networks)


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """`Digest a="x", b=y` -> ('digest', {'a': 'x', 'b': 'y'}); quotes and escapes undone."""
    scheme, _, rest = value.strip().partition(" ")
    params: dict[str, str] = {}
    i, n = 0, len(rest)
    while i < n:
        while i < n and rest[i] in " \t,":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        name = rest[i:eq].strip().lower()
        i = eq + 1
        while i < n and rest[i] in " \t":
            i += 1
        if i < n and rest[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and rest[i] != '"':
                if rest[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(rest[i])
                i += 1
            i += 1
            value_text = "".join(chars)
        else:
            end = rest.find(",", i)
            end = n if end < 0 else end
            value_text = rest[i:end].strip()
            i = end
        if name:
            params[name] = value_text
    return scheme.lower(), params


def same_target(digest_uri: str, request_uri: str) -> bool:
    """True when the digest's uri names the Request-URI's host and port (users aside)."""
    if digest_uri == request_uri:
        return True
    try:
        a, b = parse_uri(digest_uri), parse_uri(request_uri)
    except SipParseError:
        return False
    if a.scheme != b.scheme or a.scheme not in ("sip", "sips"):
        return False
    default = 5061 if a.scheme == "sips" else 5060
    return (a.host.lower(), a.port or default) == (b.host.lower(), b.port or default)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode("utf-8", "surrogateescape")).hexdigest()


def _same(a: str, b: str) -> bool:
    """Constant-time comparison of text from the wire, whatever its characters
    (`hmac.compare_digest` refuses non-ASCII str with a TypeError)."""
    return hmac.compare_digest(a.encode("utf-8", "surrogateescape"),
                               b.encode("utf-8", "surrogateescape"))


class DigestAuth:
    """Digest authentication of requests against a `{username: password}` table."""

    def __init__(
        self,
        realm: str,
        users: Mapping[str, str],
        *,
        nonce_ttl: float = 300.0,
        secret: bytes | None = None,
        max_used_nonces: int = 100_000,
    ) -> None:
        self.realm = realm
        self.users = dict(users)
        self.nonce_ttl = nonce_ttl
        self.max_used_nonces = max_used_nonces
        self._secret = secret or secrets.token_bytes(32)
        # nonce -> (when it was issued, highest nc accepted; 0: used without qop), in order
        # of first use: entries leave once their nonce has expired (or past the cap,
        # oldest first: more genuine logins within one nonce life than that is no trunk)
        self._used: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def _sign(self, stamp: str) -> str:
        data = stamp.encode("utf-8", "surrogateescape")
        return hmac.new(self._secret, data, hashlib.sha256).hexdigest()[:32]

    def make_nonce(self, now: float) -> str:
        stamp = f"{int(now * 1000):x}"
        return f"{stamp}.{self._sign(stamp)}"

    @staticmethod
    def _issued(nonce: str) -> float:
        return int(nonce.partition(".")[0], 16) / 1000

    def _nonce_state(self, nonce: str, now: float) -> str:
        stamp, _, sig = nonce.partition(".")
        if not sig or not _same(sig, self._sign(stamp)):
            return "bad"
        if not stamp.isascii():
            return "bad"
        try:
            issued = int(stamp, 16) / 1000
        except ValueError:
            return "bad"
        return "ok" if 0 <= now - issued <= self.nonce_ttl else "stale"

    def _forget_expired(self, now: float) -> None:
        while self._used:
            nonce, (issued, _) = next(iter(self._used.items()))
            if now - issued <= self.nonce_ttl and len(self._used) < self.max_used_nonces:
                return
            del self._used[nonce]

    def _fresh_count(self, nonce: str, nc: str | None, now: float) -> bool:
        """Record a verified response's use of `nonce` (with count `nc`, or None without
        qop); False when it repeats an earlier one (a replay)."""
        self._forget_expired(now)
        seen = self._used.get(nonce)
        if nc is None:
            if seen is not None:
                return False
            count = 0
        else:
            try:
                count = int(nc, 16) if len(nc) == 8 and nc.isascii() else -1
            except ValueError:
                count = -1
            if count <= 0 or (seen is not None and count <= seen[1]):
                return False
        self._used[nonce] = (seen[0] if seen else self._issued(nonce), count)
        return True

    def challenge(self, now: float, *, stale: bool = False) -> str:
        """A `WWW-Authenticate` value."""
        value = (
            f'Digest realm="{self.realm}", nonce="{self.make_nonce(now)}", '
            'algorithm=MD5, qop="auth"'
        )
        return value + (", stale=true" if stale else "")

    def check(
        self, method: str, authorization: str | None, now: float, request_uri: str | None = None
    ) -> str:
        """'ok', 'stale' (re-challenge with stale=true), 'replay' (a genuine response sent
        again: a repeated or lower `nc`) or 'fail' (challenge again).

        With `request_uri`, the digest's uri must name its host and port (`same_target`)."""
        if not authorization:
            return "fail"
        scheme, p = parse_auth_params(authorization)
        if scheme != "digest":
            return "fail"
        username, nonce, uri, response = (
            p.get(k, "") for k in ("username", "nonce", "uri", "response")
        )
        password = self.users.get(username)
        if password is None or p.get("realm") != self.realm or not uri or not response:
            return "fail"
        if request_uri is not None and not same_target(uri, request_uri):
            return "fail"
        algorithm = p.get("algorithm", "MD5").upper()
        if algorithm != "MD5":
            return "fail"
        state = self._nonce_state(nonce, now)
        if state == "bad":
            return "fail"
        ha1 = _md5(f"{username}:{self.realm}:{password}")
        ha2 = _md5(f"{method}:{uri}")
        qop = p.get("qop")
        if qop is None:
            expected = _md5(f"{ha1}:{nonce}:{ha2}")
        elif qop.lower() == "auth":
            expected = _md5(f"{ha1}:{nonce}:{p.get('nc', '')}:{p.get('cnonce', '')}:auth:{ha2}")
        else:
            return "fail"
        if not _same(expected, response.lower()):
            return "fail"
        if state != "ok":
            return "stale"
        if not self._fresh_count(nonce, p.get("nc") if qop is not None else None, now):
            return "replay"
        return "ok"


class AuthFailures:
    """Wrong credentials per source host: after `limit` failures within `window` seconds
    the host is refused (403, no new challenge) for `block` seconds, so a scanner cannot
    guess passwords at line rate. A request without credentials is not a failure (every
    honest client starts with one)."""

    def __init__(self, limit: int = 5, window: float = 60.0, block: float = 300.0,
                 max_hosts: int = 10_000) -> None:
        self.limit, self.window, self.block, self.max_hosts = limit, window, block, max_hosts
        self._failures: dict[str, list[float]] = {}
        self._blocked: dict[str, float] = {}  # host -> until

    def blocked(self, host: str, now: float) -> bool:
        until = self._blocked.get(host)
        if until is None:
            return False
        if now < until:
            return True
        del self._blocked[host]
        return False

    def record(self, host: str, now: float) -> bool:
        """One failure from `host`; True if it is blocked from now on."""
        recent = [t for t in self._failures.get(host, ()) if now - t < self.window]
        recent.append(now)
        if len(recent) >= self.limit:
            self._failures.pop(host, None)
            self._blocked[host] = now + self.block
            return True
        if host not in self._failures and len(self._failures) >= self.max_hosts:
            self._failures.pop(next(iter(self._failures)))  # the oldest host seen
        self._failures[host] = recent
        return False
