"""SDP offer/answer for one audio stream (RFC 4566, RFC 3264), sans-I/O.

`parse_sdp` reads a session description (c=, m=, a=rtpmap/fmtp/ptime/direction).
`negotiate` picks, for the first usable audio stream of an offer, the caller's most
preferred codec that we support (PCMU or PCMA at 8 kHz) plus telephone-event, and
reads where to send RTP and whether the caller put us on hold (c=0.0.0.0 or
sendonly/inactive). `build_answer` writes the matching answer, rejecting every other
m-line with port 0 as RFC 3264 asks. No common codec raises `NoCommonCodec`, which
the UAS answers with 488 Not Acceptable Here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

__all__ = [
    "Codec",
    "MediaDescription",
    "Negotiated",
    "NoCommonCodec",
    "SdpError",
    "SessionDescription",
    "build_answer",
    "build_offer",
    "negotiate",
    "parse_sdp",
]

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_ANSWER_DIRECTION = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
STATIC_CODECS = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 3: ("GSM", 8000), 9: ("G722", 8000),
                 18: ("G729", 8000), 4: ("G723", 8000), 13: ("CN", 8000)}  # fmt: skip
SUPPORTED = ("PCMU", "PCMA")
MAX_SDP_BYTES = 64 * 1024


class SdpError(ValueError):
    """Malformed SDP."""


class NoCommonCodec(SdpError):
    """The offer has no audio codec we support (answer 488)."""


@dataclass(frozen=True)
class Codec:
    payload_type: int
    name: str
    clock_rate: int = 8000
    channels: int = 1
    fmtp: str | None = None


@dataclass
class MediaDescription:
    media: str
    port: int
    proto: str
    formats: list[str]
    connection: str | None = None
    rtpmap: dict[int, tuple[str, int, int]] = field(default_factory=dict)
    fmtp: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None
    direction: str | None = None
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    def codecs(self) -> list[Codec]:
        """The offered payload types in preference order, named from rtpmap or the static table."""
        out: list[Codec] = []
        for fmt in self.formats:
            if not fmt.isdigit():
                continue
            pt = int(fmt)
            if pt in self.rtpmap:
                name, rate, channels = self.rtpmap[pt]
            elif pt in STATIC_CODECS:
                name, rate = STATIC_CODECS[pt]
                channels = 1
            else:
                continue
            out.append(Codec(pt, name, rate, channels, self.fmtp.get(pt)))
        return out


@dataclass
class SessionDescription:
    origin: str = ""
    session_name: str = ""
    connection: str | None = None
    direction: str | None = None
    media: list[MediaDescription] = field(default_factory=list)

    @property
    def audio(self) -> MediaDescription | None:
        for m in self.media:
            if m.media == "audio" and m.port != 0:
                return m
        return None


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line {value!r}")
    addr = parts[2].split("/")[0]  # drop multicast TTL/count
    if not addr:
        raise SdpError(f"bad c= address {value!r}")
    return addr


def parse_sdp(data: bytes | str) -> SessionDescription:
    if isinstance(data, bytes | bytearray):
        if len(data) > MAX_SDP_BYTES:
            raise SdpError("SDP too long")
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not valid UTF-8") from None
    elif isinstance(data, str):
        text = data
    else:
        raise SdpError(f"expected bytes or str, got {type(data).__name__}")
    sdp = SessionDescription()
    current: MediaDescription | None = None
    seen_version = False
    for raw in text.replace("\r\n", "\n").split("\n"):
        line = raw.strip()
        if not line:
            continue
        if len(line) < 2 or line[1] != "=":
            raise SdpError(f"bad SDP line {line[:60]!r}")
        kind, value = line[0], line[2:].strip()
        if kind == "v":
            if value != "0":
                raise SdpError(f"unsupported SDP version {value!r}")
            seen_version = True
        elif kind == "o":
            sdp.origin = value
        elif kind == "s":
            sdp.session_name = value
        elif kind == "c":
            addr = _connection_address(value)
            if current is None:
                sdp.connection = addr
            else:
                current.connection = addr
        elif kind == "m":
            parts = value.split()
            if len(parts) < 3:
                raise SdpError(f"bad m= line {value!r}")
            port_text = parts[1].split("/")[0]
            if not port_text.isdigit() or int(port_text) > 65535:
                raise SdpError(f"bad m= port {parts[1]!r}")
            current = MediaDescription(
                media=parts[0].lower(), port=int(port_text), proto=parts[2], formats=parts[3:]
            )
            sdp.media.append(current)
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            name = name.strip().lower()
            if name in DIRECTIONS and not colon:
                if current is None:
                    sdp.direction = name
                else:
                    current.direction = name
                continue
            if current is None:
                continue
            current.attributes.append((name, attr_value if colon else None))
            if name == "rtpmap":
                _parse_rtpmap(current, attr_value)
            elif name == "fmtp":
                pt_text, _, params = attr_value.partition(" ")
                if pt_text.isdigit():
                    current.fmtp[int(pt_text)] = params.strip()
            elif name == "ptime":
                ptime = attr_value.strip().split(".")[0]
                if ptime.isdigit() and 0 < int(ptime) <= 1000:
                    current.ptime = int(ptime)
    if not seen_version:
        raise SdpError("SDP without v=0 line")
    return sdp


def _parse_rtpmap(media: MediaDescription, value: str) -> None:
    pt_text, _, encoding = value.strip().partition(" ")
    if not pt_text.isdigit() or int(pt_text) > 127:
        raise SdpError(f"bad rtpmap payload type {value!r}")
    parts = encoding.strip().split("/")
    if len(parts) < 2 or not parts[0] or not parts[1].isdigit():
        raise SdpError(f"bad rtpmap encoding {value!r}")
    channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
    media.rtpmap[int(pt_text)] = (parts[0], int(parts[1]), channels)


@dataclass(frozen=True)
class Negotiated:
    """The outcome of an offer: what to send, where, and whether we are on hold."""

    codec: Codec
    dtmf_payload_type: int | None
    remote_host: str
    remote_port: int
    direction: str  # our direction in the answer
    ptime: int = 20
    media_index: int = 0

    @property
    def on_hold(self) -> bool:
        """True when the caller does not want our audio (we must not send)."""
        return self.direction in ("recvonly", "inactive")

    @property
    def encoding(self) -> str:
        """The `media.codecs` encoding name: 'pcmu' or 'pcma'."""
        return self.codec.name.lower()


def _is_null_address(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def negotiate(offer: SessionDescription, supported: tuple[str, ...] = SUPPORTED) -> Negotiated:
    """Choose codec, DTMF payload type, RTP target and direction for the answer."""
    wanted = {name.upper() for name in supported}
    for index, media in enumerate(offer.media):
        if media.media != "audio" or media.port == 0:
            continue
        if "SAVP" in media.proto.upper() or not media.proto.upper().startswith("RTP/AVP"):
            continue  # SRTP and non-RTP transports are not supported
        codecs = media.codecs()
        chosen = next(
            (c for c in codecs if c.name.upper() in wanted and c.clock_rate == 8000), None
        )
        if chosen is None:
            continue
        dtmf = next(
            (
                c.payload_type
                for c in codecs
                if c.name.lower() == "telephone-event" and c.clock_rate == 8000
            ),
            None,
        )
        host = media.connection or offer.connection
        if host is None:
            raise SdpError("offer has no c= line for the audio stream")
        offered = media.direction or offer.direction or "sendrecv"
        if _is_null_address(host) and offered == "sendrecv":
            offered = "sendonly"  # RFC 2543 style hold
        return Negotiated(
            codec=Codec(chosen.payload_type, chosen.name.upper(), 8000),
            dtmf_payload_type=dtmf,
            remote_host=host,
            remote_port=media.port,
            direction=_ANSWER_DIRECTION[offered],
            ptime=20,
            media_index=index,
        )
    names = [c.name for m in offer.media if m.media == "audio" for c in m.codecs()]
    raise NoCommonCodec(
        f"no common audio codec: offer has {names or 'none'}, we support {list(supported)}"
    )


def _ip_kind(host: str) -> str:
    try:
        return "IP6" if ipaddress.ip_address(host).version == 6 else "IP4"
    except ValueError:
        return "IP4"


def _audio_lines(port: int, codec: Codec, dtmf_pt: int | None, direction: str) -> list[str]:
    pts = [str(codec.payload_type)] + ([str(dtmf_pt)] if dtmf_pt is not None else [])
    lines = [f"m=audio {port} RTP/AVP {' '.join(pts)}"]
    lines.append(f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}")
    if dtmf_pt is not None:
        lines += [f"a=rtpmap:{dtmf_pt} telephone-event/8000", f"a=fmtp:{dtmf_pt} 0-16"]
    lines += ["a=ptime:20", f"a={direction}"]
    return lines


def _session_lines(local_ip: str, session_id: int, version: int) -> list[str]:
    kind = _ip_kind(local_ip)
    return [
        "v=0",
        f"o=atoms {session_id} {version} IN {kind} {local_ip}",
        "s=atoms-gateway",
        f"c=IN {kind} {local_ip}",
        "t=0 0",
    ]


def build_answer(
    offer: SessionDescription,
    negotiated: Negotiated,
    local_ip: str,
    local_port: int,
    *,
    session_id: int = 1,
    version: int = 1,
) -> bytes:
    """The SDP answer: one m-line per offered m-line, all but the chosen one refused."""
    lines = _session_lines(local_ip, session_id, version)
    for index, media in enumerate(offer.media):
        if index == negotiated.media_index:
            lines += _audio_lines(
                local_port, negotiated.codec, negotiated.dtmf_payload_type, negotiated.direction
            )
        else:
            fmt = media.formats[0] if media.formats else "0"
            lines.append(f"m={media.media} 0 {media.proto} {fmt}")
    return ("\r\n".join(lines) + "\r\n").encode()


def build_offer(
    local_ip: str,
    local_port: int,
    *,
    codecs: tuple[Codec, ...] = (Codec(0, "PCMU"), Codec(8, "PCMA")),
    dtmf_payload_type: int = 101,
    direction: str = "sendrecv",
    session_id: int = 1,
    version: int = 1,
) -> bytes:
    """An SDP offer (for a late-offer INVITE answered with our offer in the 200 OK)."""
    lines = _session_lines(local_ip, session_id, version)
    pts = [str(c.payload_type) for c in codecs] + [str(dtmf_payload_type)]
    lines.append(f"m=audio {local_port} RTP/AVP {' '.join(pts)}")
    lines += [f"a=rtpmap:{c.payload_type} {c.name}/{c.clock_rate}" for c in codecs]
    lines += [
        f"a=rtpmap:{dtmf_payload_type} telephone-event/8000",
        f"a=fmtp:{dtmf_payload_type} 0-16",
        "a=ptime:20",
        f"a={direction}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()
