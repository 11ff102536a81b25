"""Provider webhooks and stream routes, sans-I/O: what a provider's HTTP request carried,
how its signature is checked, and what we answer. Each provider module describes itself
with a `StreamProvider`; `gateway.routes` is the I/O shell that serves them all.

Once a provider's secret is set, each of its webhooks must pass its `check` (else 403 with
the reason), and an answer that gives the stream URL gets a per-call token of ours for it
(issued only after the check passed): a provider cannot sign its stream's WebSocket, so
the stream's upgrade must bring the token back (`gateway.route_auth`).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["XML", "StreamOffer", "StreamProvider", "Webhook", "WebhookAnswer", "WebhookRequest",
           "same_secret"]

XML = "application/xml"
JSON = "application/json"


def same_secret(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a secret from the wire (any characters) with ours."""
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogateescape"),
                               expected.encode("utf-8", "surrogateescape"))


@dataclass(frozen=True)
class WebhookRequest:
    """A provider's request to one of its routes, as read by the I/O shell."""

    method: str
    url: str  # as the provider called it (what it signs): from public_url, else the Host
    headers: Mapping[str, str]  # looked up without regard to case
    query: Mapping[str, str]
    received: float  # wall-clock seconds since the epoch (a signature's freshness)
    form: Mapping[str, str]  # a POST's form fields, else the query (if read: `Webhook`)
    body: bytes = b""  # the raw body (if read)


@dataclass(frozen=True)
class WebhookAnswer:
    text: str
    content_type: str  # XML or JSON

    @classmethod
    def json(cls, value: Any) -> WebhookAnswer:
        return cls(json.dumps(value), JSON)


@dataclass(frozen=True)
class StreamOffer:
    """Where the provider's stream connects (`url`, as the provider reaches us) and the
    per-call token for it, when the provider's secret is set."""

    url: str
    token: str | None = None

    def with_token(self) -> str:
        return f"{self.url}?token={self.token}" if self.token else self.url


@dataclass(frozen=True)
class Webhook:
    """A route `/{provider}/{leaf}` answering `method` ("*": any)."""

    method: str
    leaf: str  # "voice", "answer", "event"
    answer: Callable[[WebhookRequest, StreamOffer], WebhookAnswer]
    offers_stream: bool = True  # its answer gives the stream URL (so a token is issued)
    reads_body: bool = False  # its answer needs the raw body
    reads_form: bool = False  # ... or the form fields (read after the body)


# (secret, request) -> why it is refused, or None when it passes
Check = Callable[[str, WebhookRequest], str | None]


@dataclass(frozen=True)
class StreamProvider:
    """A telephony provider whose calls arrive as a WebSocket media stream: served at
    `/{name}/stream`, answered by its `webhooks`, secured by the setting `secret`."""

    protocol: Callable[..., Any]  # `protocol(max_message=...)`: a fresh sans-I/O protocol
    secret: str  # the `Settings` field with its secret (`gateway.route_auth`)
    check: Check  # its webhooks' signature (or token) check, once `secret` is set
    signed: Literal["url", "form", "body"]  # what `check` covers besides URL and headers
    webhooks: tuple[Webhook, ...]
    # Twilio signs the stream's upgrade too (checked like a webhook), but only its URL,
    # the same for every call: the per-call token travels as this start parameter instead
    # of in the stream URL.
    start_token: str | None = None
    secret_opens_stream: bool = False  # Exotel: `?token=<secret>` opens the stream too

    def paths(self, name: str) -> list[str]:
        return [f"/{name}/{hook.leaf}" for hook in self.webhooks] + [f"/{name}/stream"]
