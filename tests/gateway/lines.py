"""In-memory lines for voice-loop tests: `SilentLine`, the `Transport` of `gateway.call`,
counting the frames sent and ignoring the rest (tests subclass it for what they check, and
call `play_tick` / `caller_frame` themselves), and `TickedLine`, a line on a `MediaTick`.
"""

from __future__ import annotations

from collections import deque

import numpy as np

from gateway.call import Call
from gateway.media_tick import MediaTick, TickedStream
from gateway.testing import run_until
from media.frames import split_frames


class SilentLine:
    def __init__(self) -> None:
        super().__init__()
        self.frames = 0

    async def send_audio(self, frame: np.ndarray) -> None:
        self.frames += 1

    async def clear_audio(self) -> None:
        return None

    async def hangup(self) -> None:
        return None

    async def transfer(self, target: str) -> None:
        return None

    async def send_event(self, event: object) -> None:
        return None


class TickedLine(SilentLine, TickedStream):
    """A line on a media tick (`gateway.media_tick`), as every live transport is: the tick
    plays the call's frames (counted) and hears the caller frames given to `speak`, one a
    tick. With a `VirtualClock`, `run_until` drives it as `replay` drives a recording."""

    def __init__(self, tick: MediaTick) -> None:
        super().__init__()
        self._tick = tick
        self._caller: deque[np.ndarray] = deque()

    def join(self, call: Call) -> None:
        self.call = call
        self._tick.join(self)

    def leave(self) -> None:
        if self._tick is not None:
            self._tick.leave(self)
        self.call = None

    def speak(self, pcm: np.ndarray) -> None:
        """Caller audio for the ticks to come, a 20 ms frame each."""
        self._caller.extend(split_frames(pcm))

    def take_frames(self) -> tuple[list[np.ndarray], list[float]]:
        if not self._caller or self._tick is None:
            return [], []
        return [self._caller.popleft()], [self._tick.clock.now()]


__all__ = ["SilentLine", "TickedLine", "run_until"]
