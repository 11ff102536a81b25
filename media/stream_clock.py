"""When each frame of an incoming audio stream would have arrived without network jitter.

Caller frames come over a network: they arrive late by varying amounts, sometimes several
at once. Their media time is steady (one frame every 20 ms), so a frame's arrival without
jitter is its media time plus the smallest arrival offset seen so far (the least delayed
frame shows the path's fixed delay). The offset only falls, so the times stay steady: the
echo canceller that pairs caller frames with agent audio by these times needs them
steady to the sample. A slow clock drift between the far end and us shows up as an echo
delay that drifts, which the canceller follows. When every frame for `block` frames comes
more than `max_late_s` later than that (a gap in the stream, a longer route), the offset
jumps up to the smallest of them.
"""

from __future__ import annotations

import math

from media.frames import FRAME_MS

FRAME_S = FRAME_MS / 1000


class StreamClock:
    """Jitter-free arrival times of the frames of one incoming stream."""

    def __init__(self, frame_s: float = FRAME_S, max_late_s: float = 0.1, block: int = 25) -> None:
        self.frame_s = frame_s
        self.max_late_s = max_late_s
        self.block = block
        self._n = 0
        self._offset = math.inf
        self._block_min = math.inf

    def frame(self, arrived: float) -> float:
        """The next frame arrived at `arrived` (seconds, our clock): when it would have
        arrived without jitter (never later than `arrived`)."""
        media = self._n * self.frame_s
        self._n += 1
        offset = arrived - media
        self._offset = min(self._offset, offset)
        self._block_min = min(self._block_min, offset)
        if self._n % self.block == 0:
            if self._block_min - self._offset > self.max_late_s:
                self._offset = self._block_min
            self._block_min = math.inf
        return media + self._offset
