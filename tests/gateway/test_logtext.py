"""gateway.logtext: network text made safe for log lines."""

from __future__ import annotations

from gateway.logtext import printable


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
