"""SIP messages (RFC 3261): parse and serialize requests and responses, sans-I/O.

`parse_message(bytes)` turns one datagram into a `SipRequest` or `SipResponse`;
`SipStreamParser` frames messages out of a TCP byte stream by Content-Length.
Headers are kept in order with their original names, looked up case-insensitively
with compact forms expanded (`i` is Call-ID, `v` is Via, ...); folded lines are
joined. `make_response` builds a response that copies Via, From, To, Call-ID and
CSeq from a request. `parse_uri`, `parse_name_addr` and `parse_via` read the
structured headers. Anything malformed raises `SipParseError` (a `ValueError`)
with a message that says what was wrong; it never raises anything else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

__all__ = [
    "REASONS",
    "Headers",
    "NameAddr",
    "SipMessage",
    "SipParseError",
    "SipRequest",
    "SipResponse",
    "SipStreamParser",
    "SipUri",
    "Via",
    "canonical_name",
    "make_response",
    "parse_message",
    "parse_name_addr",
    "parse_params",
    "parse_uri",
    "parse_via",
    "split_list",
]

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024
MAGIC_COOKIE = "z9hG4bK"


class SipParseError(ValueError):
    """Malformed SIP input. `partial` holds what was readable (for a 400), if anything."""

    def __init__(self, message: str, partial: SipMessage | None = None) -> None:
        super().__init__(message)
        self.partial = partial


COMPACT = {
    "i": "call-id",
    "f": "from",
    "t": "to",
    "v": "via",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
}

# Headers whose value is a comma-separated list (RFC 3261 7.3.1); others are never split.
LIST_HEADERS = frozenset(
    {
        "via", "contact", "route", "record-route", "allow", "supported", "require",
        "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
        "allow-events", "content-encoding", "in-reply-to", "alert-info", "call-info",
        "error-info", "warning", "path", "reason",
    }
)  # fmt: skip

REASONS = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    407: "Proxy Authentication Required", 408: "Request Timeout", 415: "Unsupported Media Type",
    420: "Bad Extension", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 503: "Service Unavailable", 505: "Version Not Supported",
    600: "Busy Everywhere", 603: "Decline",
}  # fmt: skip

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TOKEN = re.compile(r"^[A-Za-z0-9\-.!%*_+`'~]+$")


def canonical_name(name: str) -> str:
    """The lookup key of a header name: lower case, compact form expanded."""
    low = name.strip().lower()
    return COMPACT.get(low, low)


def split_list(value: str) -> list[str]:
    """Split a header value at commas that are outside quotes and angle brackets."""
    parts: list[str] = []
    depth = 0
    quoted = False
    escaped = False
    start = 0
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


class Headers:
    """Ordered SIP headers with case-insensitive lookup (compact forms included)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(str(n), str(v)) for n, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of `name` as written (not split at commas)."""
        key = canonical_name(name)
        for n, v in self._items:
            if canonical_name(n) == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of `name`, list headers (Via, Contact, Allow, ...) split at commas."""
        key = canonical_name(name)
        out: list[str] = []
        for n, v in self._items:
            if canonical_name(n) == key:
                out.extend(split_list(v) if key in LIST_HEADERS else [v])
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every `name` header by one, kept at the position of the first."""
        key = canonical_name(name)
        for i, (n, _) in enumerate(self._items):
            if canonical_name(n) == key:
                self._items[i] = (n, value)
                self._items[i + 1 :] = [
                    item for item in self._items[i + 1 :] if canonical_name(item[0]) != key
                ]
                return
        self._items.append((name, value))

    def add(self, name: str, value: str) -> None:
        self._items.append((name, value))

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (name, value))

    def remove(self, name: str) -> None:
        key = canonical_name(name)
        self._items = [item for item in self._items if canonical_name(item[0]) != key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def copy(self) -> Headers:
        return Headers(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


# ----------------------------------------------------------------------------- URIs, addresses


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    quoted = False
    start = 0
    for i, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def parse_params(text: str) -> dict[str, str | None]:
    """`;a=1;b;c="x"` (leading `;` optional) -> {'a': '1', 'b': None, 'c': '"x"'}."""
    params: dict[str, str | None] = {}
    for part in _split_outside_quotes(text, ";"):
        part = part.strip()
        if not part:
            continue
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipParseError(f"empty parameter name in {text!r}")
        params[name] = value.strip() if eq else None
    return params


def _format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def _split_hostport(text: str) -> tuple[str, int | None]:
    text = text.strip()
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"unclosed IPv6 reference in {text!r}")
        host, rest = text[: end + 1], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError(f"junk after IPv6 host in {text!r}")
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = text.partition(":")
    if not host or any(c in host for c in ' \t<>"\\'):
        raise SipParseError(f"bad host in {text!r}")
    if not port_text:
        return host, None
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise SipParseError(f"bad port in {text!r}")
    return host, int(port_text)


@dataclass
class SipUri:
    """A SIP/SIPS URI (other schemes such as tel: keep everything after the colon in `user`)."""

    scheme: str = "sip"
    user: str = ""
    host: str = ""
    port: int | None = None
    password: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    headers: str = ""

    def __str__(self) -> str:
        if self.scheme not in ("sip", "sips"):
            return f"{self.scheme}:{self.user}{_format_params(self.params)}"
        userinfo = ""
        if self.user:
            userinfo = self.user + (f":{self.password}" if self.password is not None else "") + "@"
        port = f":{self.port}" if self.port is not None else ""
        hdrs = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{_format_params(self.params)}{hdrs}"


def parse_uri(text: str) -> SipUri:
    """Parse `sip:user:pw@host:port;params?headers`, `sips:...` or e.g. `tel:+1555`."""
    text = text.strip()
    scheme, colon, rest = text.partition(":")
    if not colon or not scheme or not _TOKEN.match(scheme) or not rest:
        raise SipParseError(f"not a URI: {text!r}")
    scheme = scheme.lower()
    if scheme not in ("sip", "sips"):
        body, _, params = rest.partition(";")
        return SipUri(scheme=scheme, user=body, params=parse_params(params))
    rest, _, headers = rest.partition("?")
    userinfo, at, hostpart = rest.rpartition("@")
    if not at:
        userinfo, hostpart = "", rest
    hostport, _, params = hostpart.partition(";")
    host, port = _split_hostport(hostport)
    user, pw_sep, password = userinfo.partition(":")
    return SipUri(
        scheme=scheme,
        user=user,
        host=host,
        port=port,
        password=password if pw_sep else None,
        params=parse_params(params),
        headers=headers,
    )


@dataclass
class NameAddr:
    """A From/To/Contact/Refer-To value: display name, URI and header parameters (tag=...)."""

    uri: SipUri
    display: str = ""
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        display = f'"{self.display}" ' if self.display else ""
        return f"{display}<{self.uri}>{_format_params(self.params)}"


def parse_name_addr(text: str) -> NameAddr:
    """Parse `"Name" <sip:u@h>;tag=x`, `Name <sip:u@h>`, `<sip:u@h>` or bare `sip:u@h;tag=x`."""
    text = text.strip()
    if not text:
        raise SipParseError("empty address")
    display = ""
    if text.startswith('"'):
        i, escaped = 1, False
        while i < len(text):
            ch = text[i]
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                break
            i += 1
        else:
            raise SipParseError(f"unclosed quote in address {text!r}")
        display = text[1:i].replace('\\"', '"').replace("\\\\", "\\")
        text = text[i + 1 :].strip()
        if not text.startswith("<"):
            raise SipParseError(f"quoted display name without <uri> in {text!r}")
    lt = text.find("<")
    if lt >= 0:
        gt = text.find(">", lt)
        if gt < 0:
            raise SipParseError(f"unclosed <uri> in {text!r}")
        if not display:
            display = text[:lt].strip()
        uri = parse_uri(text[lt + 1 : gt])
        params = parse_params(text[gt + 1 :])
    else:
        # addr-spec without brackets: parameters after ';' belong to the header, not the URI
        uri_text, _, param_text = text.partition(";")
        uri = parse_uri(uri_text)
        params = parse_params(param_text)
    return NameAddr(uri=uri, display=display, params=params)


@dataclass
class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=z9hG4bK...;rport`."""

    transport: str
    host: str
    port: int | None = None
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"SIP/2.0/{self.transport} {self.host}{port}{_format_params(self.params)}"


def parse_via(text: str) -> Via:
    proto, _, rest = text.strip().partition(" ")
    parts = [p.strip() for p in proto.split("/")]
    if len(parts) != 3 or parts[0].upper() != "SIP" or not parts[2]:
        raise SipParseError(f"bad Via protocol in {text!r}")
    sent_by, _, params = rest.strip().partition(";")
    if not sent_by.strip():
        raise SipParseError(f"Via without sent-by: {text!r}")
    host, port = _split_hostport(sent_by)
    return Via(transport=parts[2].upper(), host=host, port=port, params=parse_params(params))


# ----------------------------------------------------------------------------- messages


@dataclass(eq=True)
class SipMessage:
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""

    def _require(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None or not value.strip():
            raise SipParseError(f"missing {name} header")
        return value.strip()

    @property
    def call_id(self) -> str:
        return self._require("Call-ID")

    @property
    def cseq(self) -> tuple[int, str]:
        value = self._require("CSeq")
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit() or len(parts[0]) > 10:
            raise SipParseError(f"bad CSeq {value!r}")
        number = int(parts[0])
        if number >= 2**31:
            raise SipParseError(f"CSeq number out of range: {value!r}")
        return number, parts[1].upper()

    @property
    def vias(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        values = self.headers.get_all("Via")
        if not values:
            raise SipParseError("missing Via header")
        return parse_via(values[0])

    @property
    def from_addr(self) -> NameAddr:
        return parse_name_addr(self._require("From"))

    @property
    def to_addr(self) -> NameAddr:
        return parse_name_addr(self._require("To"))

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    def _start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialize; Content-Length is set to the body's length."""
        self.headers.set("Content-Length", str(len(self.body)))
        lines = [self._start_line()]
        lines.extend(f"{name}: {value}" for name, value in self.headers)
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


@dataclass(eq=True)
class SipRequest(SipMessage):
    method: str = "OPTIONS"
    uri: str = ""
    version: str = "SIP/2.0"

    def _start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self.uri}>"


@dataclass(eq=True)
class SipResponse(SipMessage):
    status: int = 200
    reason: str = "OK"
    version: str = "SIP/2.0"

    def _start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
) -> SipResponse:
    """A response to `request` with its Via (all), From, To, Call-ID and CSeq copied.

    `to_tag` is added to To when To has no tag yet (never on 100 Trying by convention
    of the caller)."""
    out = Headers()
    for name, value in request.headers:
        key = canonical_name(name)
        if key == "via":
            out.add("Via", value)
        elif key in _COPIED:
            out.add(_COPIED[key], value)
        elif key == "to":
            if to_tag and "tag" not in _to_params(value):
                value = f"{value.strip()};tag={to_tag}"
            out.add("To", value)
    for name, value in headers:
        out.add(name, value)
    return SipResponse(
        status=status, reason=reason or REASONS.get(status, "Unknown"), headers=out, body=body
    )


_COPIED = {"from": "From", "call-id": "Call-ID", "cseq": "CSeq"}


def _to_params(value: str) -> dict[str, str | None]:
    try:
        return parse_name_addr(value).params
    except SipParseError:
        return {}


# ----------------------------------------------------------------------------- parsing


def _parse_head(head: bytes) -> SipMessage:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SipParseError(f"header section is not valid UTF-8 ({exc.reason})") from None
    lines = text.replace("\r\n", "\n").split("\n")
    bad = _CONTROL.search("\n".join(lines))
    if bad:
        raise SipParseError(f"control character {bad.group()!r} in the header section")
    while lines and not lines[0].strip():
        lines.pop(0)
    if not lines:
        raise SipParseError("empty message")
    first = lines[0].rstrip("\r")
    msg: SipMessage
    if first.upper().startswith("SIP/"):
        parts = first.split(" ", 2)
        if len(parts) < 2 or parts[0].upper() != "SIP/2.0":
            raise SipParseError(f"bad status line {first!r}")
        code = parts[1]
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError(f"bad status code in {first!r}")
        msg = SipResponse(status=int(code), reason=parts[2].strip() if len(parts) > 2 else "")
    else:
        parts = first.split(" ")
        if len(parts) != 3 or not all(parts):
            raise SipParseError(f"bad request line {first!r} (want 'METHOD URI SIP/2.0')")
        method, uri, version = parts
        if not _TOKEN.match(method):
            raise SipParseError(f"bad method {method!r}")
        if version.upper() != "SIP/2.0":
            raise SipParseError(f"unsupported SIP version {version!r}")
        if ":" not in uri or any(ord(c) < 33 for c in uri):
            raise SipParseError(f"bad Request-URI {uri!r}")
        msg = SipRequest(method=method.upper(), uri=uri)
    items: list[tuple[str, str]] = []
    for raw in lines[1:]:
        line = raw.rstrip("\r")
        if not line:
            continue
        if line[0] in " \t":
            if not items:
                raise SipParseError("continuation line before any header")
            name, value = items[-1]
            items[-1] = (name, f"{value} {line.strip()}".strip())
            continue
        name, colon, value = line.partition(":")
        name = name.strip()
        if not colon or not _TOKEN.match(name):
            raise SipParseError(f"bad header line {line[:60]!r}", partial=msg)
        items.append((name, value.strip()))
    msg.headers = Headers(items)
    return msg


def _find_head_end(data: bytes | bytearray, start: int = 0) -> tuple[int, int]:
    """Index where the header section ends and where the body starts, or (-1, -1)."""
    crlf = data.find(b"\r\n\r\n", start)
    lf = data.find(b"\n\n", start)
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return crlf, crlf + 4
    if lf >= 0:
        return lf, lf + 2
    return -1, -1


def _content_length(msg: SipMessage) -> int | None:
    value = msg.headers.get("Content-Length")
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 9:
        raise SipParseError(f"bad Content-Length {value!r}", partial=msg)
    length = int(value)
    if length > MAX_BODY_BYTES:
        raise SipParseError(f"Content-Length {length} over the {MAX_BODY_BYTES} limit", msg)
    return length


def parse_message(data: bytes) -> SipRequest | SipResponse:
    """Parse one datagram. Without Content-Length the body is the rest of the datagram."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise SipParseError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data).lstrip(b"\r\n")
    end, body_start = _find_head_end(data)
    if end < 0:
        if len(data) > MAX_HEADER_BYTES:
            raise SipParseError("header section too long")
        end, body_start = len(data), len(data)
    if end > MAX_HEADER_BYTES:
        raise SipParseError("header section too long")
    msg = _parse_head(data[:end])
    rest = data[body_start:]
    length = _content_length(msg)
    if length is None:
        msg.body = rest
    elif len(rest) < length:
        msg.body = rest
        raise SipParseError(f"body is {len(rest)} bytes, Content-Length says {length}", partial=msg)
    else:
        msg.body = rest[:length]
    assert isinstance(msg, SipRequest | SipResponse)
    return msg


class SipStreamParser:
    """Frame SIP messages out of a byte stream (TCP): `feed(bytes) -> [messages]`.

    Content-Length is mandatory on streams (missing means an empty body). CRLF
    keep-alives between messages are skipped. After a `SipParseError` the stream is
    out of sync and the connection should be closed."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[SipRequest | SipResponse]:
        self._buf += data
        out: list[SipRequest | SipResponse] = []
        while True:
            # skip keep-alive CRLFs (RFC 5626) before a message
            skip = 0
            while skip < len(self._buf) and self._buf[skip] in (0x0D, 0x0A):
                skip += 1
            if skip:
                del self._buf[:skip]
            if not self._buf:
                return out
            end, body_start = _find_head_end(self._buf)
            if end < 0:
                if len(self._buf) > MAX_HEADER_BYTES:
                    self._buf.clear()
                    raise SipParseError("header section too long on stream")
                return out
            if end > MAX_HEADER_BYTES:
                self._buf.clear()
                raise SipParseError("header section too long on stream")
            try:
                msg = _parse_head(bytes(self._buf[:end]))
                length = _content_length(msg) or 0
            except SipParseError:
                self._buf.clear()
                raise
            if len(self._buf) - body_start < length:
                return out
            msg.body = bytes(self._buf[body_start : body_start + length])
            del self._buf[: body_start + length]
            assert isinstance(msg, SipRequest | SipResponse)
            out.append(msg)

    @property
    def buffered(self) -> int:
        return len(self._buf)
