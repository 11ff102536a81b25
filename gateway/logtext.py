"""Text from the network, made safe for log lines and rationed when it floods.

`printable(text)` escapes every character that is not printable (line breaks, carriage
returns, ANSI escapes, NUL, bidirectional overrides, ...) as Python would (`\\n`,
`\\x1b`, `\\u202e`) and bounds the length, so a caller's id, a webhook's body or a peer's
message can neither forge a log line nor fill the disk. It is idempotent: printable
text comes back unchanged (a backslash is printable).

`redact_url(url)` hides the secrets a URL may carry (`?token=`, a password before `@`),
for URLs that go in log lines (an agent server's `?token=`, say).

`LogRation` lets the first few lines of a kind through in each window of time and
counts the rest, then says how many it held back: one garbage datagram per line would
let anyone who can reach the port write the log at line rate.
"""

from __future__ import annotations

import logging
import re
from typing import Any

__all__ = ["LogRation", "printable", "redact_url"]

MAX_LOGGED_CHARS = 200


def printable(text: object, limit: int = MAX_LOGGED_CHARS) -> str:
    """`text` (any object: its `str`) for a log line: non-printable characters escaped,
    at most `limit` characters of it, then "..." when it was longer."""
    s = text if isinstance(text, str) else str(text)
    cut = s[:limit]
    if not cut.isprintable():
        cut = "".join(c if c.isprintable() else _escape(c) for c in cut)
    return cut + "..." if len(s) > limit else cut


_SECRET_PARAM = re.compile(r"([?&;](?:[^=&;#]*(?:token|key|secret|password|passwd|auth|sig)"
                           r"[^=&;#]*)=)[^&;#]*", re.IGNORECASE)
_USERINFO_PASSWORD = re.compile(r"^([a-z][a-z0-9+.-]*://[^/@:]*:)[^/@]*@", re.IGNORECASE)


def redact_url(url: str) -> str:
    """`url` with the values of secret-looking query parameters (token, key, secret,
    password, auth, sig...) and a password in its userinfo replaced by `***`."""
    return _USERINFO_PASSWORD.sub(r"\1***@", _SECRET_PARAM.sub(r"\1***", url))


def _escape(c: str) -> str:
    code = ord(c)
    if c in "\n\r\t":
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}[c]
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


class LogRation:
    """At most `burst` lines per `window` seconds through `logger`; the rest go to DEBUG and
    are counted, and the first line after the window (or `flush`) says how many were held
    back. Time is the caller's (`now`), so sans-I/O code can use it with its own clock."""

    def __init__(self, logger: logging.Logger, what: str, *, burst: int = 10,
                 window: float = 60.0) -> None:
        self.logger = logger
        self.what = what  # "malformed SIP messages": for the summary line
        self.burst = burst
        self.window = window
        self._start: float | None = None
        self._shown = 0
        self.held = 0  # lines held back in the current window

    def log(self, now: float, level: int, msg: str, *args: Any) -> bool:
        """Log `msg % args` (string arguments made `printable`) unless over the ration.
        True when the line was the first one held back in its window: the owner may then
        arrange to call `flush` at `window_end`, so the summary comes even if nothing
        else does."""
        if self._start is None or now - self._start >= self.window:
            self.flush(now)
            self._start, self._shown = now, 0
        safe = tuple(printable(a) if isinstance(a, str | bytes | Exception) else a
                     for a in args)
        if self._shown < self.burst:
            self._shown += 1
            self.logger.log(level, msg, *safe)
            return False
        self.held += 1
        self.logger.debug(msg, *safe)
        return self.held == 1

    @property
    def window_end(self) -> float:
        return (self._start or 0.0) + self.window

    def flush(self, now: float) -> None:
        """Say how many lines were held back since the window began (if any)."""
        if self.held:
            span = now - self._start if self._start is not None else 0.0
            self.logger.info("%d more %s in %.0f s (each logged at DEBUG)", self.held,
                             self.what, span)
            self.held = 0
