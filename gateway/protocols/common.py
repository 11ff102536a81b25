"""The shared vocabulary of every provider protocol: inbound events, outbound commands, errors.

A protocol object turns what the far end sent (text, bytes) into a list of these events and
turns these commands into what to write back. Audio stays in the wire codec here
(`AudioIn.payload`, `SendAudio.payload`); conversion to internal PCM happens in the audio edge.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

import orjson

from agent.events import MAX_JSON_DEPTH, too_deep
from media.codecs import WireFormat
from runtime.dtmf import DTMF_KEYS

__all__ = [
    "AudioIn",
    "CallEnded",
    "CallStarted",
    "Cleared",
    "ClearAudio",
    "Command",
    "CommandError",
    "Connected",
    "DEFAULT_MAX_MESSAGE",
    "DTMF_DIGITS",
    "DtmfIn",
    "Event",
    "Hangup",
    "Ignored",
    "MarkPlayed",
    "ProtocolError",
    "ProviderError",
    "SendAudio",
    "SendMark",
    "WireFormat",
]

DEFAULT_MAX_MESSAGE = 256 * 1024
"""Largest text or binary message a protocol accepts, in characters/bytes. A 20 ms mu-law
frame is about 300 characters of JSON; Exotel's largest documented chunk is 100 KB of PCM."""

DTMF_DIGITS = frozenset(DTMF_KEYS)


class ProtocolError(ValueError):
    """The far end sent something this protocol cannot accept: malformed JSON, bad base64,
    a missing field, a message out of sequence, binary where text is expected, oversize.

    Carries no close code: the server maps it to one (e.g. WebSocket 1003/1007/1008/1009)."""


class CommandError(ValueError):
    """Our side asked for something the protocol cannot render (audio before the stream
    started, audio that is not whole 20 ms frames, an unknown command)."""


# ---------------------------------------------------------------- inbound events


@dataclass(frozen=True, slots=True)
class Connected:
    """The far end opened the stream and announced its protocol (before `CallStarted`)."""

    version: str = ""


@dataclass(frozen=True, slots=True)
class CallStarted:
    """The stream carries a call. `params` are the custom parameters (TwiML `<Parameter>`,
    Telnyx/Exotel `custom_parameters`, Plivo `extra_headers`, Vonage NCCO headers)."""

    call_id: str
    stream_id: str
    wire: WireFormat
    params: dict[str, str] = field(default_factory=dict)
    from_number: str = ""
    to_number: str = ""


@dataclass(frozen=True, slots=True)
class AudioIn:
    """Caller audio exactly as on the wire (base64 already removed)."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """The far end played everything we sent before the mark `name` (or dropped it on clear)."""

    name: str


@dataclass(frozen=True, slots=True)
class Cleared:
    """The far end confirmed it emptied its playback buffer."""


@dataclass(frozen=True, slots=True)
class CallEnded:
    reason: str


@dataclass(frozen=True, slots=True)
class ProviderError:
    """The far end reported an error on the stream; the call may continue."""

    message: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A well-formed message that needs no action (unknown event, the other track, ...)."""

    what: str


Event = (
    Connected
    | CallStarted
    | AudioIn
    | DtmfIn
    | MarkPlayed
    | Cleared
    | CallEnded
    | ProviderError
    | Ignored
)


# ---------------------------------------------------------------- outbound commands


@dataclass(frozen=True, slots=True)
class SendAudio:
    """Audio to play to the caller, in the call's wire codec, whole 20 ms frames."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class ClearAudio:
    """Drop whatever the far end has buffered and not yet played."""


@dataclass(frozen=True, slots=True)
class SendMark:
    """Ask the far end to report `MarkPlayed(name)` once the audio sent so far has played."""

    name: str


@dataclass(frozen=True, slots=True)
class Hangup:
    """End the call. WebSocket providers: write what `send` returns, then close the socket."""


Command = SendAudio | ClearAudio | SendMark | Hangup


# ---------------------------------------------------------------- helpers for parsers


def show(value: Any, limit: int = 48) -> str:
    """A value from the wire, for an error message: ASCII-only and short."""
    text = ascii(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json_object(text: Any, max_chars: int) -> dict[str, Any]:
    """One WebSocket text message to a JSON object, or ProtocolError."""
    if not isinstance(text, str):
        raise ProtocolError(f"expected a text message, got {type(text).__name__}")
    if len(text) > max_chars:
        raise ProtocolError(f"message of {len(text)} characters exceeds the limit of {max_chars}")
    try:
        msg = orjson.loads(text)  # a quarter of json.loads' time on a 20 ms media message
    except (ValueError, RecursionError) as exc:  # orjson's JSONDecodeError is a ValueError
        raise ProtocolError(f"malformed JSON: {exc}") from None
    if not isinstance(msg, dict):
        raise ProtocolError(f"expected a JSON object, got {type(msg).__name__}")
    return msg


def get_obj(msg: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = msg.get(key)
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: missing object {key!r}")
    return value


def get_str(msg: dict[str, Any], key: str, where: str) -> str:
    value = msg.get(key)
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: missing string {key!r}")
    return value


def opt_str(msg: dict[str, Any], key: str) -> str:
    """A scalar field as text ('' when absent); numbers are accepted as their decimal text."""
    value = msg.get(key)
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or value is None:
        return ""
    if isinstance(value, int | float):
        return str(value)
    return ""


def decode_b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: payload must be a base64 string")
    try:  # = base64.b64decode(value, validate=True), without its Python wrapper
        return binascii.a2b_base64(value, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise ProtocolError(f"{where}: bad base64 payload ({exc})") from None


def check_digit(value: Any, where: str) -> str:
    if not isinstance(value, str) or value.upper() not in DTMF_DIGITS:
        raise ProtocolError(f"{where}: {show(value)} is not a DTMF digit")
    return value.upper()


def parse_rate(value: Any, allowed: tuple[int, ...] | None, where: str) -> int:
    """A sample rate given as an int or a string of digits."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1000 <= value <= 192000:
        raise ProtocolError(f"{where}: bad sample rate {show(value)}")
    if allowed is not None and value not in allowed:
        raise ProtocolError(f"{where}: sample rate {value} is not one of {allowed}")
    return value


def str_params(value: Any, where: str) -> dict[str, str]:
    """Custom parameters as str -> str. Accepts an object, or a list of {name, value}.
    Values nested more than `MAX_JSON_DEPTH` levels deep are refused (their JSON text
    would recurse past Python's limit)."""
    if value is None:
        return {}
    if too_deep(value):
        raise ProtocolError(f"{where}: parameters nested more than {MAX_JSON_DEPTH} levels deep")
    if isinstance(value, list):
        out: dict[str, str] = {}
        for item in value:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ProtocolError(f"{where}: parameters list needs {{name, value}} objects")
            out[item["name"]] = as_text(item.get("value"))
        return out
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: parameters must be an object")
    return {str(k): as_text(v) for k, v in value.items()}


def as_text(value: Any) -> str:
    """A JSON value as a parameter string: strings as is, others as compact JSON."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"))


_COMPACT = json.JSONEncoder(separators=(",", ":"))  # (json.dumps makes one per call)


def dumps(msg: dict[str, Any]) -> str:
    """Compact JSON, as `json.dumps(msg, separators=(",", ":"))` gives it."""
    return _COMPACT.encode(msg)


@functools.lru_cache(maxsize=4096)
def _before_payload(fields: tuple[tuple[str, Any], ...], outer: str,
                    inner: tuple[tuple[str, Any], ...]) -> str:
    text = dumps({**dict(fields), outer: {**dict(inner), "payload": ""}})
    assert text.endswith('"payload":""}}')
    return text[:-3]  # up to the payload's opening quote


def media_json(fields: tuple[tuple[str, Any], ...], outer: str,
               inner: tuple[tuple[str, Any], ...], payload: bytes) -> str:
    """`dumps({**fields, outer: {**inner, "payload": base64(payload)}})`, the message sent
    for every 20 ms of audio, built by concatenation: the text around the payload is made
    once per stream (a dozen `json.dumps` calls a second per call, saved)."""
    return _before_payload(fields, outer, inner) + base64.b64encode(payload).decode() + '"}}'


_XML_BAD = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


_PARAM_BAD = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def xml_text(value: str) -> str:
    """Text from the network (a webhook's parameter) fit for an answer document: without
    control characters (C0, DEL, C1) and what XML 1.0 cannot carry (lone surrogates,
    U+FFFE, U+FFFF), so the answer is sent rather than refused."""
    return _PARAM_BAD.sub("", value)


def xml_document(root: ET.Element) -> str:
    """An XML answer document; refuses text that XML 1.0 cannot carry (control characters)."""
    for element in root.iter():
        for value in [element.text or "", *element.attrib.keys(), *element.attrib.values()]:
            if _XML_BAD.search(value):
                raise ValueError(f"{show(value)} holds a character XML 1.0 cannot carry")
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root, encoding="unicode")
