"""Wire codecs: G.711 mu-law and A-law, and 16-bit linear PCM (L16), to and from int16 numpy.

G.711 works through lookup tables built once at import: decoding indexes a 256-entry
int16 table with the code bytes; encoding indexes a 65536-entry uint8 table with the
int16 samples viewed as uint16. The tables follow the ITU-T G.711 segment rules and
give the same bytes as the classic reference implementation (and Python's `audioop`).

`WireFormat` names one edge format (encoding plus sample rate) and converts a whole
payload in one call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

__all__ = [
    "Encoding",
    "WireFormat",
    "alaw_decode",
    "alaw_encode",
    "g711_tables",
    "l16_decode",
    "l16_encode",
    "ulaw_decode",
    "ulaw_encode",
]

Encoding = Literal["pcmu", "pcma", "l16", "l16be"]
ENCODINGS: tuple[str, ...] = get_args(Encoding)

_MU_BIAS = 0x84
_MU_CLIP = 8159  # largest magnitude of the 14-bit input that mu-law represents


def _all_int16() -> np.ndarray:
    """Every int16 value, in the order of its uint16 bit pattern (0..32767, -32768..-1)."""
    return np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).astype(np.int32)


def _segment(mag: np.ndarray, first_end: int) -> np.ndarray:
    """Segment number 0..8 of each magnitude: how many of the ends first_end*2**k it exceeds."""
    ends = first_end * (1 << np.arange(8, dtype=np.int32)) + (1 << np.arange(8)) - 1
    # ends[k] = (first_end + 1) * 2**k - 1: 0x3F,0x7F,... for mu-law, 0x1F,0x3F,... for A-law
    return np.searchsorted(ends, mag, side="left").astype(np.int32)


def _build_ulaw_encode() -> np.ndarray:
    x = _all_int16() >> 2  # G.711 mu-law works on 14-bit samples
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), _MU_CLIP) + (_MU_BIAS >> 2)
    seg = _segment(mag, 0x3F)
    mantissa = (mag >> (np.minimum(seg, 7) + 1)) & 0x0F
    code = np.where(seg >= 8, 0x7F, (seg << 4) | mantissa)
    mask = np.where(negative, 0x7F, 0xFF)
    return (code ^ mask).astype(np.uint8)


def _build_ulaw_decode() -> np.ndarray:
    u = ~np.arange(256, dtype=np.int32) & 0xFF
    t = (((u & 0x0F) << 3) + _MU_BIAS) << ((u & 0x70) >> 4)
    return np.where(u & 0x80, _MU_BIAS - t, t - _MU_BIAS).astype(np.int16)


def _build_alaw_encode() -> np.ndarray:
    x = _all_int16() >> 3  # G.711 A-law works on 13-bit samples
    positive = x >= 0
    mag = np.where(positive, x, -x - 1)
    seg = _segment(mag, 0x1F)
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    code = np.where(seg >= 8, 0x7F, (seg << 4) | ((mag >> shift) & 0x0F))
    mask = np.where(positive, 0xD5, 0x55)
    return (code ^ mask).astype(np.uint8)


def _build_alaw_decode() -> np.ndarray:
    a = np.arange(256, dtype=np.int32) ^ 0x55
    seg = (a & 0x70) >> 4
    t = ((a & 0x0F) << 4) + np.where(seg == 0, 8, 0x108)
    t = t << np.maximum(seg - 1, 0)
    return np.where(a & 0x80, t, -t).astype(np.int16)


_ULAW_ENC = _build_ulaw_encode()
_ULAW_DEC = _build_ulaw_decode()
_ALAW_ENC = _build_alaw_encode()
_ALAW_DEC = _build_alaw_decode()
for _table in (_ULAW_ENC, _ULAW_DEC, _ALAW_ENC, _ALAW_DEC):
    _table.setflags(write=False)


def g711_tables(encoding: str) -> tuple[np.ndarray, np.ndarray]:
    """(decode, encode) tables of 'pcmu' or 'pcma': int16 by code byte, and code byte by
    int16 sample viewed as uint16 (read-only)."""
    if encoding == "pcmu":
        return _ULAW_DEC, _ULAW_ENC
    if encoding == "pcma":
        return _ALAW_DEC, _ALAW_ENC
    raise ValueError(f"not a G.711 encoding: {encoding!r}")


def _as_bytes(data: bytes | bytearray | memoryview, what: str) -> np.ndarray:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"{what}: expected bytes, got {type(data).__name__}")
    return np.frombuffer(data, dtype=np.uint8)


def _as_pcm(pcm: np.ndarray, what: str) -> np.ndarray:
    if not isinstance(pcm, np.ndarray):
        raise TypeError(f"{what}: expected a numpy int16 array, got {type(pcm).__name__}")
    if pcm.dtype != np.int16:
        raise TypeError(f"{what}: expected dtype int16, got {pcm.dtype}")
    if pcm.ndim != 1:
        raise ValueError(f"{what}: expected mono (1-D) audio, got shape {pcm.shape}")
    return pcm


def ulaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """G.711 mu-law bytes to int16 samples (one sample per byte)."""
    return _ULAW_DEC[_as_bytes(data, "ulaw_decode")]


def ulaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples to G.711 mu-law bytes."""
    return _ULAW_ENC[_as_pcm(pcm, "ulaw_encode").view(np.uint16)].tobytes()


def alaw_decode(data: bytes | bytearray | memoryview) -> np.ndarray:
    """G.711 A-law bytes to int16 samples (one sample per byte)."""
    return _ALAW_DEC[_as_bytes(data, "alaw_decode")]


def alaw_encode(pcm: np.ndarray) -> bytes:
    """int16 samples to G.711 A-law bytes."""
    return _ALAW_ENC[_as_pcm(pcm, "alaw_encode").view(np.uint16)].tobytes()


def l16_decode(data: bytes | bytearray | memoryview, big_endian: bool = False) -> np.ndarray:
    """16-bit signed linear PCM bytes to a (writable, native-order) int16 array."""
    raw = _as_bytes(data, "l16_decode")
    if len(raw) % 2:
        raise ValueError(
            f"l16_decode: payload has an odd number of bytes ({len(raw)}); "
            "16-bit PCM needs two bytes per sample"
        )
    return raw.view(">i2" if big_endian else "<i2").astype(np.int16)


def l16_encode(pcm: np.ndarray, big_endian: bool = False) -> bytes:
    """int16 samples to 16-bit signed linear PCM bytes."""
    return _as_pcm(pcm, "l16_encode").astype(">i2" if big_endian else "<i2", copy=False).tobytes()


@dataclass(frozen=True, slots=True)
class WireFormat:
    """One edge audio format: `pcmu`/`pcma` (G.711), `l16` (little-endian), `l16be` (network
    order, as in RTP L16). Mono."""

    encoding: Encoding
    sample_rate: int

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ValueError(
                f"unknown encoding {self.encoding!r}; expected one of {', '.join(ENCODINGS)}"
            )
        if not isinstance(self.sample_rate, int) or self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be a positive int, got {self.sample_rate!r}")

    @property
    def bytes_per_sample(self) -> int:
        return 1 if self.encoding in ("pcmu", "pcma") else 2

    def bytes_for_ms(self, ms: float) -> int:
        """Payload size of `ms` milliseconds of audio in this format."""
        return int(round(self.sample_rate * ms / 1000)) * self.bytes_per_sample

    def decode(self, data: bytes | bytearray | memoryview) -> np.ndarray:
        """Payload bytes to int16 samples at `sample_rate`."""
        if self.encoding == "pcmu":
            return ulaw_decode(data)
        if self.encoding == "pcma":
            return alaw_decode(data)
        return l16_decode(data, big_endian=self.encoding == "l16be")

    def encode(self, pcm: np.ndarray) -> bytes:
        """int16 samples at `sample_rate` to payload bytes."""
        if self.encoding == "pcmu":
            return ulaw_encode(pcm)
        if self.encoding == "pcma":
            return alaw_encode(pcm)
        return l16_encode(pcm, big_endian=self.encoding == "l16be")
