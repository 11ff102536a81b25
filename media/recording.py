"""Optional per-call recording: both sides' audio and a timeline of events.

`CallRecorder` collects 16 kHz int16 frames from the caller and the agent, each with
its time `t` (seconds since the call started, on the call's injected clock), and
events. Frames are kept as a list and only laid out into arrays when writing:
`write_wav` writes a stereo 16 kHz WAV (caller left, agent right), each frame placed
at sample round(t * 16000), silence where nothing was recorded; a frame that would
overlap the one before it on its side goes right after it instead (`frame_positions`:
a burst of caller frames, or a talkspurt's first frame played between two media ticks),
so no audio is lost. `write_timeline` writes
`{"events": [{"t_ms": ..., "type": ..., ...fields}], "media": {...}}` sorted by time.

`media.recording_stream.StreamingRecorder` is the same recorder writing to disk while the
call runs (`--record-dir`); `read_timeline` reads its `.jsonl` as well as a `.json`.

`media` is what replay needs to drive a call exactly as it was driven live
(`gateway.testing`): `caller` lists, per caller frame in order, `[t_ms, heard_ms]` (the
frame's start as recorded, and when the voice loop heard it: its media tick), `agent`
the time each agent frame was played. Caller frames are recorded at their arrival minus
one frame (audio arrives when its last sample has been sent), so the caller channel is
the caller's timing as the network delivered it, and the tick each frame met is kept
beside it.
"""

from __future__ import annotations

import json
import math
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np

from media.frames import SAMPLE_RATE

__all__ = ["MAX_EVENTS", "CallRecorder", "frame_positions", "read_timeline", "timeline_doc",
           "timeline_path"]

MAX_EVENTS = 200_000  # events a recording keeps at most (a busy hour has about 20,000)


def _check_t(t: float) -> float:
    if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t < 0:
        raise ValueError(f"t must be a finite number of seconds >= 0, got {t!r}")
    return float(t)


class CallRecorder:
    """Caller and agent audio plus events of one call, written out at the end."""

    def __init__(self, max_seconds: float | None = None, max_events: int = MAX_EVENTS) -> None:
        """`max_seconds`: audio and events from that time on are not kept (a call's maximum
        duration bounds its recording); `max_events`: nor events beyond that many."""
        self._caller: list[tuple[int, np.ndarray]] = []
        self._agent: list[tuple[int, np.ndarray]] = []
        self._events: list[dict[str, Any]] = []
        self.max_seconds = max_seconds
        self.max_events = max_events
        self.dropped = 0  # frames and events not kept (over the bounds)
        self._caller_times: list[list[float]] = []  # [t_ms, heard_ms] per caller frame
        self._agent_times: list[float] = []  # t_ms per agent frame
        self._ends = {"caller": 0, "agent": 0}  # sample after each side's last frame
        self._kept_events = 0

    def caller(self, frame: np.ndarray, t: float, heard: float | None = None) -> None:
        """A frame from the caller, starting at `t` seconds, which the voice loop heard at
        `heard` (default: `t`)."""
        t_ms = round(_check_t(t) * 1000, 3)
        if not self._add(self._caller, frame, t_ms / 1000, "caller"):
            return
        self._caller_times.append([t_ms, round((t if heard is None else heard) * 1000, 3)])

    def agent(self, frame: np.ndarray, t: float) -> None:
        """A frame sent to the caller, starting at `t` seconds."""
        t_ms = round(_check_t(t) * 1000, 3)
        if not self._add(self._agent, frame, t_ms / 1000, "agent"):
            return
        self._agent_times.append(t_ms)

    def event(self, t: float, type: str, **fields: Any) -> None:
        """An event at `t` seconds; `fields` should be JSON-serializable (else str())."""
        if not isinstance(type, str) or not type:
            raise ValueError(f"event type must be a non-empty str, got {type!r}")
        if "t_ms" in fields:
            raise ValueError("event field name 't_ms' is reserved for the event's time")
        t = _check_t(t)
        if self._kept_events >= self.max_events or (
                self.max_seconds is not None and t >= self.max_seconds):
            self.dropped += 1
            return
        self._kept_events += 1
        self._events.append({"t_ms": round(t * 1000, 3), "type": type, **fields})

    @property
    def duration(self) -> float:
        """Seconds from the call start to the end of the last recorded frame."""
        return max(self._ends.values()) / SAMPLE_RATE

    def timeline(self) -> list[dict[str, Any]]:
        """Events in time order (stable for equal times)."""
        return timeline_doc(self._events, [], [])["events"]

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
            json.dump(timeline_doc(self._events, self._caller_times, self._agent_times), f,
                      indent=1, default=str)
            f.write("\n")

    def _add(self, track: list[tuple[int, np.ndarray]], frame: np.ndarray, t: float,
             side: str) -> bool:
        """Keep a frame (False: it would start at or after `max_seconds`, and is not kept)."""
        if not isinstance(frame, np.ndarray) or frame.dtype != np.int16 or frame.ndim != 1:
            raise TypeError(
                f"CallRecorder.{side} expects a 1-D numpy int16 frame, got "
                f"{type(frame).__name__}{getattr(frame, 'dtype', '')}"
                f"{getattr(frame, 'shape', '')}"
            )
        start = max(int(round(_check_t(t) * SAMPLE_RATE)), self._ends[side])
        if self.max_seconds is not None and start >= self.max_seconds * SAMPLE_RATE:
            self.dropped += 1
            return False
        track.append((start, frame.copy()))
        self._ends[side] = start + len(frame)
        return True


def timeline_doc(events: list[dict[str, Any]], caller_times: list[list[float]],
                 agent_times: list[float]) -> dict[str, Any]:
    """A recording's timeline as the `.json` file holds it: events in time order (stable
    for equal times), and the `media` lists when there are frames."""
    doc: dict[str, Any] = {"events": sorted(events, key=lambda e: e["t_ms"])}
    if caller_times or agent_times:
        doc["media"] = {"caller": caller_times, "agent": agent_times}
    return doc


def read_timeline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A timeline file as `timeline_doc` gives it: a finished recording's `.json`, or the
    `.jsonl` a recording writes while its call runs (`media.recording_stream`: one event
    per line, and `{"media": {"caller": [...], "agent": [...]}}` lines), complete or cut
    short by a crash (a line it could not finish is skipped)."""
    text = Path(path).read_text(encoding="utf-8")
    if Path(path).suffix != ".jsonl":
        doc = json.loads(text)
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: not a recording's timeline")
        return doc
    events: list[dict[str, Any]] = []
    caller: list[list[float]] = []
    agent: list[float] = []
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue  # (the line being written when the process died)
        if not isinstance(item, dict):
            continue
        media = item.get("media")
        if isinstance(media, dict):
            caller.extend(media.get("caller") or [])
            agent.extend(media.get("agent") or [])
        elif isinstance(item.get("type"), str) and isinstance(item.get("t_ms"), int | float):
            events.append(item)
    return timeline_doc(events, caller, agent)


def timeline_path(wav: str | os.PathLike[str]) -> Path | None:
    """The timeline beside a recording's WAV: `.json` once finished, else the `.jsonl`
    of a call still running or cut short; None when there is neither."""
    for suffix in (".json", ".jsonl"):
        path = Path(wav).with_suffix(suffix)
        if path.exists():
            return path
    return None


def frame_positions(times_ms: list[float], frame_samples: int) -> list[int]:
    """Where `CallRecorder` placed frames of one side recorded at `times_ms`: at their time,
    or right after the frame before when they would overlap it."""
    out: list[int] = []
    end = None
    for t in times_ms:
        start = int(round(_check_t(t / 1000) * SAMPLE_RATE))
        if end is not None:
            start = max(start, end)
        out.append(start)
        end = start + frame_samples
    return out
