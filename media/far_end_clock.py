"""The far end's 20 ms frame grid, on which both its caller frames and our audio run.

Caller frames come over a network, late by varying amounts, sometimes several at once;
the far end also plays what we send on a frame grid (a phone's or a media server's
audio clock), from the first frame after our audio arrives. Pairing each caller frame
with the agent audio whose echo it carries is then a matter of frame numbers on that
grid, not of arrival order: caller frame `n` is the n-th frame of the stream, and an
agent frame plays in the first slot after it is sent (right after the frame before,
while a talkspurt plays unbroken).

The grid's phase on our clock is the smallest arrival offset seen (the least delayed
frame shows the path's fixed delay), so jitter and bursts do not move it. When every
frame for `block` frames comes more than `max_late_s` later than that (a gap in the
stream, a longer route), the offset moves up to the smallest of them.
"""

from __future__ import annotations

import math

from media.frames import FRAME_S

MAX_AHEAD = 10  # slots our audio may run ahead of the grid (a late ticker catching up)


class FarEndClock:
    """Frame numbers of one call's caller frames and of the slots our frames play in."""

    def __init__(self, frame_s: float = FRAME_S, max_late_s: float = 0.1, block: int = 25) -> None:
        self.frame_s = frame_s
        self.max_late_s = max_late_s
        self.block = block
        self._n = 0
        self._offset = math.inf  # arrival of frame n is at least n * frame_s + this
        self._block_min = math.inf
        self._slot = -1  # slot of the last agent frame

    def caller_frame(self, arrived: float) -> int:
        """The next caller frame arrived at `arrived` (seconds, our clock): its number."""
        n = self._n
        self._n += 1
        offset = arrived - n * self.frame_s
        self._offset = min(self._offset, offset)
        self._block_min = min(self._block_min, offset)
        if self._n % self.block == 0:
            if self._block_min - self._offset > self.max_late_s:
                self._offset = self._block_min
            self._block_min = math.inf
        return n

    def agent_frame(self, sent: float) -> int:
        """An agent frame sent at `sent`: the number of the caller frame during which the
        far end plays it."""
        if self._offset == math.inf:  # no caller frame yet: count on from the last one
            slot = self._n
        else:
            slot = math.ceil((sent - self._offset) / self.frame_s - 1e-6) + 1
        if slot <= self._slot < slot + MAX_AHEAD:
            slot = self._slot + 1  # the talkspurt plays on unbroken
        self._slot = slot
        return slot
