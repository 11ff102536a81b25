"""Small helpers shared by the protocol tests."""

from __future__ import annotations

import base64
import json
from typing import Any, get_args

import numpy as np

from gateway.protocols.common import Event
from media.codecs import WireFormat

EVENT_TYPES = get_args(Event)


def j(msg: dict[str, Any]) -> str:
    return json.dumps(msg)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tone(wire: WireFormat, ms: int = 20, hz: float = 440.0, start: int = 0) -> bytes:
    """`ms` of a sine in `wire`'s codec: real codec bytes, not random noise."""
    n = wire.sample_rate * ms // 1000
    t = (np.arange(n) + start) / wire.sample_rate
    pcm = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
    return wire.encode(pcm)


def parsed(messages: list[str | bytes]) -> list[Any]:
    return [json.loads(m) for m in messages]
