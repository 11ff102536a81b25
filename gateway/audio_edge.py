"""The edge between a wire format and the one internal audio shape.

Inbound: codec bytes -> int16 -> 16 kHz (stateful resampler) -> exact 20 ms frames.
Outbound: 20 ms 16 kHz frames -> wire rate -> codec bytes. One `AudioEdge` per call.
"""

from __future__ import annotations

import numpy as np

from media.codecs import WireFormat
from media.frames import SAMPLE_RATE, FrameChunker
from media.resample import StreamResampler


class AudioEdge:
    """Converts one call's audio between `wire` and 16 kHz 20 ms frames, both ways."""

    def __init__(self, wire: WireFormat) -> None:
        self.wire = wire
        self._in = StreamResampler(wire.sample_rate, SAMPLE_RATE)
        self._out = StreamResampler(SAMPLE_RATE, wire.sample_rate)
        self._chunker = FrameChunker()
        self._out_chunker = FrameChunker(wire.sample_rate * 20 // 1000)

    def decode(self, payload: bytes) -> list[np.ndarray]:
        """Wire bytes in; zero or more complete 16 kHz frames out."""
        return self._chunker.push(self._in.process(self.wire.decode(payload)))

    def encode(self, frame: np.ndarray) -> bytes:
        """One 16 kHz frame in; wire bytes out, always whole 20 ms frames at the wire rate
        (the resampler's start-up delay may hold back a frame at first)."""
        frames = self._out_chunker.push(self._out.process(frame))
        if not frames:
            return b""
        return self.wire.encode(frames[0] if len(frames) == 1 else np.concatenate(frames))
