"""Optional per-call recording: both sides' audio and a timeline of events.

`CallRecorder` collects 16 kHz int16 frames from the caller and the agent, each with
its time `t` (seconds since the call started, on the call's injected clock), and
events. Frames are kept as a list and only laid out into arrays when writing:
`write_wav` writes a stereo 16 kHz WAV (caller left, agent right), each frame placed
at sample round(t * 16000), silence where nothing was recorded; if two frames of one
side overlap, the later one recorded wins. `write_timeline` writes
`{"events": [{"t_ms": ..., "type": ..., ...fields}]}` sorted by time.
"""

from __future__ import annotations

import json
import math
import os
import wave
from typing import Any

import numpy as np

from media.frames import SAMPLE_RATE

__all__ = ["CallRecorder"]


def _check_t(t: float) -> float:
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        raise ValueError(f"t must be a finite number of seconds >= 0, got {t!r}")
    return float(t)


class CallRecorder:
    """Caller and agent audio plus events of one call, written out at the end."""

    def __init__(self) -> None:
        self._caller: list[tuple[int, np.ndarray]] = []
        self._agent: list[tuple[int, np.ndarray]] = []
        self._events: list[dict[str, Any]] = []

    def caller(self, frame: np.ndarray, t: float) -> None:
        """A frame heard from the caller, starting at `t` seconds."""
        self._add(self._caller, frame, t, "caller")

    def agent(self, frame: np.ndarray, t: float) -> None:
        """A frame sent to the caller, starting at `t` seconds."""
        self._add(self._agent, frame, t, "agent")

    def event(self, t: float, type: str, **fields: Any) -> None:
        """An event at `t` seconds; `fields` should be JSON-serializable (else str())."""
        if not isinstance(type, str) or not type:
            raise ValueError(f"event type must be a non-empty str, got {type!r}")
        if "t_ms" in fields:
            raise ValueError("event field name 't_ms' is reserved for the event's time")
        self._events.append({"t_ms": round(_check_t(t) * 1000, 3), "type": type, **fields})

    @property
    def duration(self) -> float:
        """Seconds from the call start to the end of the last recorded frame."""
        ends = [start + len(f) for track in (self._caller, self._agent) for start, f in track]
        return max(ends, default=0) / SAMPLE_RATE

    def timeline(self) -> list[dict[str, Any]]:
        """Events in time order (stable for equal times)."""
        return sorted(self._events, key=lambda e: e["t_ms"])

    def stereo(self) -> np.ndarray:
        """(n, 2) int16: caller left, agent right, time-aligned."""
        n = int(round(self.duration * SAMPLE_RATE))
        out = np.zeros((n, 2), dtype=np.int16)
        for channel, track in enumerate((self._caller, self._agent)):
            for start, frame in track:
                out[start : start + len(frame), channel] = frame
        return out

    def write_wav(self, path: str | os.PathLike[str]) -> None:
        with wave.open(os.fspath(path), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes(self.stereo().astype("<i2", copy=False).tobytes())

    def write_timeline(self, path: str | os.PathLike[str]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump({"events": self.timeline()}, f, indent=1, default=str)
            f.write("\n")

    @staticmethod
    def _add(track: list[tuple[int, np.ndarray]], frame: np.ndarray, t: float,
             side: str) -> None:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            raise TypeError(
                f"CallRecorder.{side} expects a 1-D numpy int16 frame, got "
                f"{type(frame).__name__}{getattr(frame, 'dtype', '')}"
                f"{getattr(frame, 'shape', '')}"
            )
        track.append((int(round(_check_t(t) * SAMPLE_RATE)), frame.copy()))
