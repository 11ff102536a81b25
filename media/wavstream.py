"""A WAV file written while it grows, readable even if its writer died before the end.

`create` writes a 44-byte PCM header whose RIFF and data sizes are the "unknown length"
placeholder 0xFFFFFFFF (as streaming writers such as ffmpeg do), then audio is written at
any sample offset (`write_frames`: a read-modify-write of the stretch the frames span, so
each channel's frames can arrive out of step with the other's); `patch_sizes` puts the real sizes in at the end.

A file whose header was never patched (its writer was killed) still reads:

- Python's `wave` takes the data size at its word and `readframes` stops at the end of
  the file, so `w.readframes(w.getnframes())` gives every byte there is (`getnframes()`
  itself is then meaningless);
- `read_pcm` here (what `replay` uses) sizes the data from the file's length, dropping a
  half-written last frame;
- `python -m media.wavstream FILE...` patches the sizes in place from the files' lengths,
  for tools that insist on them.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import wave
from pathlib import Path
from typing import BinaryIO

import numpy as np

__all__ = ["HEADER_BYTES", "UNKNOWN_SIZE", "create", "patch_sizes", "read_pcm", "write_frames"]

log = logging.getLogger(__name__)

HEADER_BYTES = 44
UNKNOWN_SIZE = 0xFFFFFFFF
_MAX_DATA = UNKNOWN_SIZE - 36  # the largest data chunk whose RIFF size still fits


def header(rate: int, channels: int, data_bytes: int = UNKNOWN_SIZE) -> bytes:
    """The 44-byte header of 16-bit PCM; `data_bytes` UNKNOWN_SIZE: a file still growing."""
    riff = UNKNOWN_SIZE if data_bytes == UNKNOWN_SIZE else 36 + data_bytes
    block = 2 * channels
    return (b"RIFF" + struct.pack("<I", riff) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
            + b"data" + struct.pack("<I", data_bytes))


def create(path: str | os.PathLike[str], rate: int, channels: int) -> BinaryIO:
    """A new file with a growing-length header, open for `write_frames` (blocking I/O: call it
    off the event loop)."""
    f = open(path, "w+b")  # noqa: SIM115 (the caller owns and closes it)
    f.write(header(rate, channels))
    f.flush()
    return f


def write_frames(f: BinaryIO, channels: int, tracks: list[list[tuple[int, np.ndarray]]]
                 ) -> None:
    """Put frames on their channels (`tracks[c]`: (start sample, int16 frame), in order;
    later ones win) with one read and one write of the stretch they span, leaving what is
    already there elsewhere (silence where nothing was written yet)."""
    spans = [(s, s + len(fr)) for track in tracks for s, fr in track]
    if not spans:
        return
    start, end = min(a for a, _ in spans), max(b for _, b in spans)
    block = 2 * channels
    offset = HEADER_BYTES + start * block
    f.seek(0, os.SEEK_END)
    have = max(0, min((end - start) * block, f.tell() - offset))
    region = np.zeros((end - start, channels), dtype="<i2")
    if have >= block:
        f.seek(offset)
        got = f.read(have - have % block)
        region[: len(got) // block] = np.frombuffer(got, dtype="<i2").reshape(-1, channels)
    for c, track in enumerate(tracks):
        for s, fr in track:
            region[s - start : s - start + len(fr), c] = fr
    f.seek(offset)
    f.write(region.tobytes())


def patch_sizes(f: BinaryIO) -> int:
    """Write the real RIFF and data sizes into the header (from the file's length, less a
    half-written last frame's bytes); returns the data size."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    f.seek(22)
    channels = struct.unpack("<H", f.read(2))[0] or 1
    data = max(0, size - HEADER_BYTES)
    data = min(data - data % (2 * channels), _MAX_DATA)
    f.seek(4)
    f.write(struct.pack("<I", 36 + data))
    f.seek(40)
    f.write(struct.pack("<I", data))
    f.flush()
    return data


def read_pcm(path: str | os.PathLike[str]) -> tuple[np.ndarray, int, int]:
    """(samples as int16, interleaved; rate; channels) of a 16-bit PCM WAV, complete or
    cut short: the data runs to the end of the file whatever the header says."""
    with wave.open(os.fspath(path)) as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        data = w.readframes(w.getnframes())  # (an unpatched header: up to the file's end)
    data = data[: len(data) - len(data) % (2 * channels)]
    return np.frombuffer(data, dtype="<i2"), rate, channels


def main(argv: list[str]) -> int:
    """`python -m media.wavstream FILE...`: patch the sizes of WAVs whose writer died."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not argv:
        log.error("usage: python -m media.wavstream FILE.wav ...")
        return 2
    for name in argv:
        with open(Path(name), "r+b") as f:
            if f.read(4) != b"RIFF":
                log.error("%s: not a WAV file", name)
                return 1
            data = patch_sizes(f)
        log.info("%s: %d bytes of audio", name, data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
