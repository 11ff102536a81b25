"""A call's recording streamed to disk while the call runs, so a crash loses at most the
last second or so.

`StreamingRecorder` is a `CallRecorder` (same `caller`, `agent`, `event` calls, same frame
placement) that keeps only what it has not written yet. A writer task wakes about every
`flush_s` seconds, takes what has gathered, and writes it in a worker thread
(`asyncio.to_thread`: there is no non-blocking file I/O, and the event loop serves every
call's audio):

- `NAME.wav`: the stereo 16 kHz WAV (caller left, agent right), grown in place with
  `media.wavstream` (its header says "unknown length" until the end, so it reads even if
  the process is killed: see that module);
- `NAME.jsonl`: the timeline as JSON lines, one event per line plus one
  `{"media": {"caller": [...], "agent": [...]}}` line per write (`read_timeline` reads
  it, complete or cut short).

`close` writes the rest, patches the WAV's sizes, turns the JSON lines into `NAME.json`
(the finished form, exactly what `CallRecorder.write_timeline` writes; written to a
temporary name and renamed, so a crash leaves one of the two) and removes the `.jsonl`.

Bounded: while the disk is slow, frames gather in memory up to `max_pending_s` of audio,
then new ones are dropped (counted in `dropped`, logged once). A failed write (disk full)
is logged once and the recording stops; the call goes on. The data reaches the operating
system every write; it is not fsynced (a killed process loses nothing written, a power
cut may).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np

from media import wavstream
from media.frames import FRAME_SAMPLES, SAMPLE_RATE
from media.recording import MAX_EVENTS, CallRecorder, read_timeline

__all__ = ["FLUSH_S", "StreamingRecorder"]

log = logging.getLogger(__name__)

FLUSH_S = 1.0  # how often gathered audio and events go to disk
MAX_PENDING_S = 30.0  # audio held while the disk lags, at most (per side)
_SAFE_NAME = re.compile(r"[A-Za-z0-9_-]{1,200}")

_Batch = tuple[list[tuple[int, np.ndarray]], list[tuple[int, np.ndarray]],
               list[dict[str, Any]], list[list[float]], list[float]]


class StreamingRecorder(CallRecorder):
    """Records a call into `folder/NAME.wav` and `NAME.jsonl` as it runs (`open` first,
    `close` at the end); `name` must be a plain file name of `[A-Za-z0-9_-]`."""

    def __init__(self, folder: str | os.PathLike[str], name: str, *,
                 max_seconds: float | None = None, max_events: int = MAX_EVENTS,
                 flush_s: float = FLUSH_S, max_pending_s: float = MAX_PENDING_S) -> None:
        super().__init__(max_seconds=max_seconds, max_events=max_events)
        folder = Path(folder)
        if not _SAFE_NAME.fullmatch(name) or (folder / f"{name}.wav").parent != folder:
            raise ValueError(f"unsafe recording name {name!r}")  # never a path: no / . NUL
        self.folder = folder
        self.wav_path = folder / f"{name}.wav"
        self.jsonl_path = folder / f"{name}.jsonl"
        self.json_path = folder / f"{name}.json"
        self.flush_s = flush_s
        self._max_pending = max(1, int(max_pending_s * SAMPLE_RATE / FRAME_SAMPLES))
        self._wav: BinaryIO | None = None
        self._lines: IO[str] | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._closing = False
        self._failed = False
        self._warned_full = False

    async def open(self) -> None:
        """Create the files (in a thread) and start the writer task."""
        await asyncio.to_thread(self._open_files)
        self._task = asyncio.create_task(self._run(), name=f"recording:{self.wav_path.stem}")

    async def close(self) -> None:
        """Write what is left and finish the files (the `.json` timeline, the WAV's sizes)."""
        if self._task is None:
            return
        self._closing = True
        self._wake.set()
        await asyncio.shield(self._task)

    def _add(self, track: list[tuple[int, np.ndarray]], frame: np.ndarray, t: float,
             side: str) -> bool:
        if self._closing or self._failed or len(track) >= self._max_pending:
            self.dropped += 1
            if not self._warned_full and not self._failed and not self._closing:
                self._warned_full = True
                log.warning("%s: the disk is behind; %s audio is being dropped",
                            self.wav_path.name, side)
            return False
        return super()._add(track, frame, t, side)

    # -- the writer task ---------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), self.flush_s)
            except TimeoutError:
                pass
            closing = self._closing
            batch = self._take()
            if not self._failed and any(batch):
                try:
                    await asyncio.to_thread(self._write, batch)
                except Exception:
                    self._failed = True
                    log.exception("%s: could not write the recording; it stops here",
                                  self.wav_path.name)
            if closing:
                break
        try:
            await asyncio.to_thread(self._finish)
        except Exception:
            log.exception("%s: could not finish the recording", self.wav_path.name)

    def _take(self) -> _Batch:
        """What has gathered since the last write (the recorder keeps nothing of it)."""
        batch = (self._caller, self._agent, self._events, self._caller_times,
                 self._agent_times)
        self._caller, self._agent, self._events = [], [], []
        self._caller_times, self._agent_times = [], []
        return batch

    # -- in a worker thread ------------------------------------------------------------
    def _open_files(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._wav = wavstream.create(self.wav_path, SAMPLE_RATE, 2)
        self._lines = open(self.jsonl_path, "w", encoding="utf-8")  # noqa: SIM115

    def _write(self, batch: _Batch) -> None:
        caller, agent, events, caller_times, agent_times = batch
        assert self._wav is not None and self._lines is not None
        wavstream.write_frames(self._wav, 2, [caller, agent])
        self._wav.flush()
        lines = [json.dumps(e, default=str) for e in events]
        if caller_times or agent_times:
            lines.append(json.dumps({"media": {"caller": caller_times, "agent": agent_times}}))
        if lines:
            self._lines.write("\n".join(lines) + "\n")
            self._lines.flush()

    def _finish(self) -> None:
        if self._wav is not None:
            try:
                wavstream.patch_sizes(self._wav)
            finally:
                self._wav.close()
        if self._lines is None:
            return
        self._lines.close()
        doc = read_timeline(self.jsonl_path)
        tmp = self.json_path.with_name(self.json_path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, default=str)
            f.write("\n")
        os.replace(tmp, self.json_path)
        self.jsonl_path.unlink()
