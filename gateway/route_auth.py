"""Who may use each way in, and whether the server may listen where it was asked to.

Every provider route checks its own scheme once its secret is set (the check is in the
provider's module in `gateway.protocols`, its `StreamProvider`):

| provider | secret setting | webhook | media stream |
|---|---|---|---|
| Twilio | `twilio_auth_token` | `X-Twilio-Signature` | the signature on the upgrade, and a per-call token (`<Parameter>`) in the start message |
| Telnyx | `telnyx_public_key` | Ed25519 `telnyx-signature-ed25519` | a per-call token |
| Plivo | `plivo_auth_token` | `X-Plivo-Signature-V3` | a per-call token |
| Vonage | `vonage_signature_secret` | signed JWT (`Authorization: Bearer`) | a per-call token |
| Exotel | `exotel_token` | `?token=` (Exotel signs nothing) | a per-call token, or `?token=` |

A provider cannot sign its media stream's WebSocket (Twilio signs only the stream's URL,
the same for every call), so the answer webhook, once verified, puts a token of ours in
the stream URL it returns (`?token=`; Twilio: a `<Parameter>` the start message brings
back): random, for one connection, and only for `TOKEN_TTL_S` (`StreamTokens`). `/ws` and WebRTC take the
`ws_token` bearer token; SIP takes digest credentials or an address allowlist.

`open_routes` lists what is left open. `AtomsApp.start` refuses to listen on an address
other than loopback while anything is open there, unless `insecure` is set (then it
warns), and logs one line per open route either way.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from gateway.protocols import WEBSOCKET_PROTOCOLS
from gateway.settings import Settings

__all__ = ["OpenRoute", "StreamTokens", "is_loopback", "open_routes"]

TOKEN_TTL_S = 120.0  # a provider connects its stream within seconds of our answer
MAX_TOKENS = 50_000  # tokens not yet used (the oldest go first beyond this)


class StreamTokens:
    """Per-call tokens for media-stream URLs: `issue(now)` gives one, `redeem(token, now)`
    is True once for it, within `ttl` seconds. Time is the caller's."""

    def __init__(self, ttl: float = TOKEN_TTL_S, limit: int = MAX_TOKENS) -> None:
        self.ttl = ttl
        self.limit = limit
        self._issued: OrderedDict[str, float] = OrderedDict()  # token -> issued at

    def issue(self, now: float) -> str:
        self._forget(now)
        token = secrets.token_urlsafe(24)
        self._issued[token] = now
        return token

    def redeem(self, token: str | None, now: float) -> bool:
        if not token or len(token) > 100:
            return False
        self._forget(now)
        issued = self._issued.pop(token, None)  # (a dict lookup: no secret-dependent loop)
        return issued is not None and now - issued <= self.ttl

    def __len__(self) -> int:
        return len(self._issued)

    def _forget(self, now: float) -> None:
        while self._issued:
            token, issued = next(iter(self._issued.items()))
            if now - issued <= self.ttl and len(self._issued) < self.limit:
                return
            del self._issued[token]


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and "localhost": only this machine can connect."""
    if host is None:
        return False
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.split("%")[0]).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class OpenRoute:
    """A way in that anyone who can reach `host` may use, and how to close it."""

    what: str  # "/telnyx/voice, /telnyx/stream"
    host: str  # the address it listens on
    fix: str  # "--telnyx-public-key or ATOMS_TELNYX_PUBLIC_KEY"

    def line(self) -> str:
        return f"open route (no authentication): {self.what} on {self.host}; secure it with " \
               f"{self.fix}"


def _flag(name: str) -> str:
    return f"--{name.replace('_', '-')} or ATOMS_{name.upper()}"


def open_routes(s: Settings, http_host: str | None = None) -> list[OpenRoute]:
    """Every enabled way in that has no credential set, with the address it listens on
    (`http_host`: where the HTTP server listens, if not `s.host`)."""
    host = http_host or s.host
    found: list[OpenRoute] = []
    for provider, entry in WEBSOCKET_PROTOCOLS.items():
        if provider not in s.providers:
            continue
        if not getattr(s, entry.secret):
            found.append(OpenRoute(", ".join(entry.paths(provider)), host,
                                   f"{_flag(entry.secret)} (or leave {provider} out "
                                   "of --providers)"))
    if not s.ws_token:
        found.append(OpenRoute("/ws, /webrtc/offer", host, _flag("ws_token")))
    if s.sip_port is not None and not (s.sip_user and s.sip_password) and not s.sip_allow:
        found.append(OpenRoute(f"SIP (port {s.sip_port})", s.sip_host or host,
                               "--sip-user and --sip-password, or --sip-allow"))
    if s.audiosocket_port is not None:  # AudioSocket has no credential of its own
        found.append(OpenRoute(f"AudioSocket (port {s.audiosocket_port})", host,
                               "a loopback --host (Asterisk on this machine) or a firewall, "
                               "then --insecure"))
    return found
