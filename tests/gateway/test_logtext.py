"""gateway.logtext: network text made safe for log lines."""

from __future__ import annotations

import pytest

from gateway.logtext import printable, redact_url


def test_printable_escapes_what_would_forge_or_hide_a_line() -> None:
    assert printable("CA123") == "CA123"
    assert printable("a\nb\r\x00\x1b[2K\x7f") == "a\\nb\\r\\x00\\x1b[2K\\x7f"
    assert printable("\u202eevil\u2028x\U000e0001") == "\\u202eevil\\u2028x\\U000e0001"
    assert printable("café ☎") == "café ☎"  # printable text is left alone
    assert printable(printable("x\ny")) == printable("x\ny")  # idempotent
    assert printable(ValueError("bad\nthing")) == "bad\\nthing"


def test_printable_bounds_the_length() -> None:
    assert printable("x" * 500, 10) == "x" * 10 + "..."
    assert printable("\n" * 500, 3) == "\\n\\n\\n..."
    assert printable("y" * 10, 10) == "y" * 10


@pytest.mark.parametrize(("url", "shown"), [
    ("ws://agents:8080/ws?token=s3cret", "ws://agents:8080/ws?token=***"),
    ("wss://h/ws?a=1&api_key=k&b=2", "wss://h/ws?a=1&api_key=***&b=2"),
    ("wss://user:pa55@h:1/x?X-Amz-Signature=abc#frag", "wss://user:***@h:1/x?X-Amz-Signature=***#frag"),
    ("ws://agents:8080/ws", "ws://agents:8080/ws"),
    ("https://h/p?q=token", "https://h/p?q=token"),  # a value that says token is no secret
])
def test_urls_lose_their_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown
