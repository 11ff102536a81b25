"""End of the caller's turn: speech, then `end_silence_ms` of not speaking.

Fed the debounced VAD state each 20 ms frame; `process` is True exactly once per turn.
The silence counts from the VAD's "stop", so the caller hears a reply
`VadConfig.stop_ms + end_silence_ms` after their last voiced frame.
"""

from __future__ import annotations

from media.frames import FRAME_MS

# With the VAD's 300 ms stop hangover, 300 ms more gives about 600 ms from the last voiced
# frame to the end of the turn (measured p50 580 ms): longer than any pause inside the eval
# set's utterances (max 440 ms), so 48/48 utterances end exactly once. benchmarks/README.md.
DEFAULT_END_SILENCE_MS = 300


class TurnDetector:
    def __init__(self, end_silence_ms: int = DEFAULT_END_SILENCE_MS) -> None:
        if end_silence_ms < 0:
            raise ValueError("end_silence_ms must be >= 0")
        self.end_silence_ms = end_silence_ms
        self._frames_needed = max(1, -(-end_silence_ms // FRAME_MS))
        self._had_speech = False
        self._silent = 0

    def process(self, speaking: bool) -> bool:
        """One frame's VAD state; True once when the turn has ended."""
        if speaking:
            self._had_speech = True
            self._silent = 0
            return False
        if not self._had_speech:
            return False
        self._silent += 1
        if self._silent >= self._frames_needed:
            self.reset()
            return True
        return False

    def reset(self) -> None:
        self._had_speech = False
        self._silent = 0
