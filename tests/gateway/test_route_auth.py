"""`gateway.route_auth`: per-call stream tokens, loopback addresses; and the secret comparison
the provider webhooks use (`gateway.protocols.webhooks`)."""

from __future__ import annotations

import pytest

from gateway.protocols.webhooks import same_secret
from gateway.route_auth import StreamTokens, is_loopback


def test_a_stream_token_works_once_and_only_in_time() -> None:
    tokens = StreamTokens(ttl=120.0)
    first, second, late = tokens.issue(0.0), tokens.issue(1.0), tokens.issue(2.0)
    assert len({first, second, late}) == 3 and all(len(t) >= 32 for t in (first, second))
    assert tokens.redeem(first, 5.0)
    assert not tokens.redeem(first, 5.0)  # once
    assert tokens.redeem(second, 121.0)
    assert not tokens.redeem(late, 122.5)  # 120.5 s after it was issued
    for bad in (None, "", "x" * 1000, "guess", first.upper()):
        assert not tokens.redeem(bad, 3.0)
    assert len(tokens) == 0  # expired and used tokens are forgotten


def test_unused_tokens_are_bounded() -> None:
    tokens = StreamTokens(ttl=120.0, limit=100)
    issued = [tokens.issue(float(i) / 1000) for i in range(1000)]
    assert len(tokens) <= 100
    assert tokens.redeem(issued[-1], 1.0) and not tokens.redeem(issued[0], 1.0)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.1.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.10", False), ("gw.example.com", False), ("", False), (None, False),
])
def test_loopback_addresses(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_secrets_compare_whatever_their_characters() -> None:
    assert same_secret("s3cret", "s3cret")
    assert not same_secret("s3creT", "s3cret")
    assert not same_secret(None, "s3cret")
    assert not same_secret("ñ\udcff", "s3cret")  # non-ASCII and lone surrogates: no error


def test_insecure_and_providers_from_the_environment() -> None:
    from gateway.settings import SettingError, Settings

    s = Settings.from_env({"ATOMS_INSECURE": "1", "ATOMS_PROVIDERS": "twilio, plivo"})
    assert s.insecure is True and s.providers == ["twilio", "plivo"]
    assert Settings.from_env({"ATOMS_PROVIDERS": "none"}).providers == []
    assert Settings.from_env({}).host == "127.0.0.1" and not Settings.from_env({}).insecure
    with pytest.raises(SettingError, match="ATOMS_PROVIDERS.*unknown provider 'twillio'"):
        Settings.from_env({"ATOMS_PROVIDERS": "twillio"})
