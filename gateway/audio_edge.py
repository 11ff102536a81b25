"""The edge between a wire format and the one internal audio shape.

Inbound: codec bytes -> int16 -> 16 kHz (stateful resampler) -> exact 20 ms frames.
Outbound: 20 ms 16 kHz frames -> wire rate -> codec bytes. One `AudioEdge` per call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from media.codecs import WireFormat
from media.frames import FRAME_MS, SAMPLE_RATE, FrameChunker
from media.resample import StreamResampler

# Sample rates accepted for audio that an agent or a client hands us with a rate of its own
# (`agent.audio`, `system.audio.chunk`, a web client's `start`): the usual rates from
# 8 kHz telephony to 48 kHz, nothing else. Each takes a stateful resampler per call and a
# filter sized by the ratio; an absurd rate (1 Hz) once built a filter of millions of taps
# and stalled the event loop for seconds, and any number of distinct rates would have kept
# as many resamplers.
AUDIO_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def audio_problem(event: Any) -> str | None:
    """Why an `agent.audio` or `system.audio.chunk` event cannot be played or heard (a rate
    outside `AUDIO_RATES`, PCM16 of an odd length), or None when it is fine."""
    rate = getattr(event, "sample_rate", None)
    if isinstance(rate, bool) or not isinstance(rate, int) or rate not in AUDIO_RATES:
        return (f"{event.type}: sample_rate must be one of {', '.join(map(str, AUDIO_RATES))}"
                f" Hz, got {rate!r}")
    pcm = getattr(event, "pcm", b"")
    if len(pcm) % 2:
        return f"{event.type}: PCM16 audio must have an even number of bytes, got {len(pcm)}"
    return None


class AudioEdge:
    """Converts one call's audio between `wire` and 16 kHz 20 ms frames, both ways."""

    def __init__(self, wire: WireFormat) -> None:
        self.wire = wire
        self._in = StreamResampler(wire.sample_rate, SAMPLE_RATE)
        self._out = StreamResampler(SAMPLE_RATE, wire.sample_rate)
        self._chunker = FrameChunker()
        self._out_chunker = FrameChunker(wire.sample_rate * FRAME_MS // 1000)

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
