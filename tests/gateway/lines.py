"""An in-memory line for voice-loop tests: the `Transport` of `gateway.call`, counting the
frames sent and ignoring the rest. Tests subclass it for what they check."""

from __future__ import annotations

import numpy as np


class SilentLine:
    def __init__(self) -> None:
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
