"""G.711 and L16 codecs: bit-exact against audioop, round trips, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from media.codecs import (
    WireFormat,
    alaw_decode,
    alaw_encode,
    l16_decode,
    l16_encode,
    ulaw_decode,
    ulaw_encode,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import audioop
    except ImportError:  # Python 3.13+
        audioop = None

needs_audioop = pytest.mark.skipif(audioop is None, reason="audioop is gone in Python 3.13")

ALL_INT16 = np.arange(-32768, 32768, dtype=np.int16)
ALL_BYTES = bytes(range(256))
pcm_arrays = arrays(np.int16, st.integers(0, 2000))


@needs_audioop
def test_ulaw_encode_matches_audioop_for_every_int16() -> None:
    assert ulaw_encode(ALL_INT16) == audioop.lin2ulaw(ALL_INT16.tobytes(), 2)


@needs_audioop
def test_alaw_encode_matches_audioop_for_every_int16() -> None:
    assert alaw_encode(ALL_INT16) == audioop.lin2alaw(ALL_INT16.tobytes(), 2)


@needs_audioop
def test_ulaw_decode_matches_audioop_for_every_byte() -> None:
    out = ulaw_decode(ALL_BYTES)
    assert out.dtype == np.int16
    assert out.tobytes() == audioop.ulaw2lin(ALL_BYTES, 2)


@needs_audioop
def test_alaw_decode_matches_audioop_for_every_byte() -> None:
    out = alaw_decode(ALL_BYTES)
    assert out.dtype == np.int16
    assert out.tobytes() == audioop.alaw2lin(ALL_BYTES, 2)


def test_g711_known_points() -> None:
    # Silence codes of the standard: 0xFF (mu-law) and 0xD5 (A-law) for zero input.
    zero = np.zeros(1, dtype=np.int16)
    assert ulaw_encode(zero) == b"\xff"
    assert alaw_encode(zero) == b"\xd5"
    assert ulaw_decode(b"\xff")[0] == 0
    assert ulaw_decode(b"\x00")[0] == -32124 and ulaw_decode(b"\x80")[0] == 32124
    assert alaw_decode(b"\xaa")[0] == 32256 and alaw_decode(b"\x2a")[0] == -32256


@pytest.mark.parametrize(("enc", "dec"), [(ulaw_encode, ulaw_decode), (alaw_encode, alaw_decode)])
def test_g711_code_round_trip_is_identity(enc, dec) -> None:
    # Every code decodes to a value that encodes back to the same code
    # (except mu-law's two zeros, 0x7F and 0xFF, which both decode to 0).
    decoded = dec(ALL_BYTES)
    again = np.frombuffer(enc(decoded), dtype=np.uint8)
    codes = np.arange(256, dtype=np.uint8)
    mismatch = codes[again != codes]
    assert set(mismatch.tolist()) <= {0x7F}


@given(pcm_arrays)
def test_ulaw_round_trip_error_is_bounded(pcm: np.ndarray) -> None:
    out = ulaw_decode(ulaw_encode(pcm))
    assert out.dtype == np.int16 and out.shape == pcm.shape
    x = pcm.astype(np.int32)
    err = np.abs(out.astype(np.int32) - x)
    # Logarithmic quantisation: the error stays within 1/16 of the magnitude (12 near zero,
    # where the 14-bit truncation adds to the step); above 32124 the code saturates.
    assert np.all(err <= np.maximum(np.abs(x) / 16, 12) + 1024 * (np.abs(x) > 32124))


@given(pcm_arrays)
def test_alaw_round_trip_error_is_bounded(pcm: np.ndarray) -> None:
    out = alaw_decode(alaw_encode(pcm))
    assert out.dtype == np.int16 and out.shape == pcm.shape
    x = pcm.astype(np.int32)
    err = np.abs(out.astype(np.int32) - x)
    assert np.all(err <= np.maximum(np.abs(x) / 32, 8) + 512 * (np.abs(x) > 32256))


@given(pcm_arrays, st.booleans())
def test_l16_round_trip_is_exact(pcm: np.ndarray, big_endian: bool) -> None:
    data = l16_encode(pcm, big_endian)
    assert len(data) == 2 * len(pcm)
    out = l16_decode(data, big_endian)
    assert out.dtype == np.int16 and np.array_equal(out, pcm)
    out[:1] = 0  # the result is writable, not a view of the bytes


def test_l16_byte_order() -> None:
    pcm = np.array([0x0102, -2], dtype=np.int16)
    assert l16_encode(pcm, big_endian=True) == b"\x01\x02\xff\xfe"
    assert l16_encode(pcm, big_endian=False) == b"\x02\x01\xfe\xff"
    assert l16_decode(b"\x01\x02", big_endian=True)[0] == 0x0102
    assert l16_decode(b"\x01\x02", big_endian=False)[0] == 0x0201
    assert l16_decode(b"\x02\x01\xfe\xff")[1] == -2  # default: little-endian


@pytest.mark.parametrize("n", [1, 3, 321])
def test_l16_odd_length_raises_clear_error(n: int) -> None:
    with pytest.raises(ValueError, match="odd number of bytes"):
        l16_decode(b"\x00" * n, big_endian=False)
    with pytest.raises(ValueError, match="odd number of bytes"):
        WireFormat("l16be", 8000).decode(b"\x00" * n)


def test_encoders_reject_wrong_dtype_and_shape() -> None:
    with pytest.raises(TypeError, match="int16"):
        ulaw_encode(np.zeros(4, dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        alaw_encode([1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mono"):
        l16_encode(np.zeros((2, 4), dtype=np.int16))
    with pytest.raises(TypeError, match="bytes"):
        ulaw_decode("abc")  # type: ignore[arg-type]


def test_encoders_accept_non_contiguous_views() -> None:
    pcm = ALL_INT16[::7]
    assert ulaw_encode(pcm) == ulaw_encode(pcm.copy())
    assert l16_encode(pcm, True) == l16_encode(pcm.copy(), True)


@pytest.mark.parametrize(
    ("encoding", "rate", "per_20ms"),
    [("pcmu", 8000, 160), ("pcma", 8000, 160), ("l16", 16000, 640), ("l16be", 8000, 320)],
)
def test_wire_format_round_trip(encoding: str, rate: int, per_20ms: int) -> None:
    fmt = WireFormat(encoding, rate)  # type: ignore[arg-type]
    assert fmt.bytes_for_ms(20) == per_20ms
    t = np.arange(rate // 50) / rate
    pcm = (8000 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
    payload = fmt.encode(pcm)
    assert len(payload) == per_20ms
    out = fmt.decode(payload)
    assert out.dtype == np.int16 and len(out) == len(pcm)
    assert np.max(np.abs(out.astype(np.int32) - pcm)) <= (0 if encoding.startswith("l16") else 300)


def test_wire_format_validates() -> None:
    with pytest.raises(ValueError, match="unknown encoding"):
        WireFormat("opus", 48000)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rate"):
        WireFormat("pcmu", 0)
    with pytest.raises(Exception):  # noqa: B017 - frozen dataclass
        WireFormat("pcmu", 8000).sample_rate = 16000  # type: ignore[misc]
