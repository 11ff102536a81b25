"""Audio between aiortc and the voice loop: decoded inbound frames -> 16 kHz 20 ms frames,
and an outbound `MediaStreamTrack` that paces the agent's voice in 20 ms frames.

Inbound: aiortc hands over decoded `av.AudioFrame`s (Opus: interleaved stereo 48 kHz,
PCMU: 8 kHz mono). `InboundAudio` downmixes to mono, resamples to 16 kHz with a
stateful low-latency resampler and re-chunks into exact 20 ms frames.

Both directions go through the app's media tick (`gateway.media_tick`, the one 20 ms tick
of every transport), by way of the call's `TrackFeed`: inbound frames wait there with their
arrival times until the tick hears them; each frame the call plays on a tick is pushed to
the track.

Outbound: `AgentAudioTrack.recv()` is pulled by aiortc's RTP sender; it returns one
20 ms frame at 48 kHz per 20 ms of real time, with pts counting samples. The frame is
interleaved stereo (both channels equal) because that is what aiortc's Opus encoder
takes: given mono, its libswresample step upmixes at -3 dB (measured), and the agent
would sound quieter than it was synthesized. It plays whatever the media tick pushed
(`push()`), silence when nothing is queued, and `clear()` drops the queue at once
(barge-in). The queue is short: the tick pushes a frame each 20 ms and aiortc pulls one
each 20 ms on its own clock, so it holds the frames of a catch-up after a stall at most.

aiortc's RTP sender computes an RFC 6465 audio level for every outbound frame with a
per-sample Python loop (measured: about 150 us per 20 ms stereo frame, more than Opus
encoding costs); importing this module replaces it with `audio_level_dbov`, the same
formula in numpy (equal results, tested).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import math
from collections import deque

import numpy as np
from aiortc import rtp as aiortc_rtp
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

from gateway.media_tick import MAX_FRAMES_PER_TICK, MAX_INBOX_FRAMES, MediaTick, TickedStream
from media.frames import FRAME_MS, FRAME_S, SAMPLE_RATE, FrameChunker
from media.resample import StreamResampler

log = logging.getLogger(__name__)

OUT_RATE = 48_000
OUT_SAMPLES = OUT_RATE * FRAME_MS // 1000  # 960
OUT_TIME_BASE = fractions.Fraction(1, OUT_RATE)
MAX_QUEUED_FRAMES = 250  # 5 s: the loop paces its output, so this only guards a stalled sender
RESYNC_S = 0.2  # if the sender falls this far behind schedule, restart the schedule


def audio_level_dbov(frame: AudioFrame) -> int:
    """RFC 6465 audio level (-127..0 dBov) of an s16 frame, as aiortc defines it."""
    pcm = np.frombuffer(frame.planes[0], dtype=np.int16).astype(np.float64)
    rms = math.sqrt(float(np.dot(pcm, pcm)) / (frame.samples * 32767.0 * 32767.0))
    if rms <= 0:
        return -127
    return round(min(max(20 * math.log10(rms), -127), 0))


aiortc_rtp.compute_audio_level_dbov = audio_level_dbov


def to_mono_int16(frame: AudioFrame) -> np.ndarray:
    """A decoded av frame as mono int16 (downmixing any number of channels)."""
    channels = len(frame.layout.channels)
    data = frame.to_ndarray()
    if frame.format.name not in ("s16", "s16p"):
        if data.dtype.kind == "f":
            data = np.clip(data * 32768.0, -32768, 32767)
        elif data.dtype == np.int32:
            data = data >> 16
        data = data.astype(np.int16)
    if channels == 1:
        return np.ascontiguousarray(data.reshape(-1), dtype=np.int16)
    if frame.format.is_planar:
        mixed = data.reshape(channels, -1).astype(np.int32).sum(axis=0)
    else:
        mixed = data.reshape(-1, channels).astype(np.int32).sum(axis=1)
    return (mixed // channels).astype(np.int16)


class InboundAudio:
    """One call's inbound conversion: av frames in, exact 16 kHz 20 ms frames out."""

    def __init__(self) -> None:
        self._rate: int | None = None
        self._resampler: StreamResampler | None = None
        self._chunker = FrameChunker()

    def process(self, frame: AudioFrame) -> list[np.ndarray]:
        rate = int(frame.sample_rate)
        if rate != self._rate:
            if self._rate is not None:
                log.info("inbound audio changed rate %s -> %s Hz", self._rate, rate)
            self._rate = rate
            self._resampler = StreamResampler(rate, SAMPLE_RATE)
        assert self._resampler is not None
        return self._chunker.push(self._resampler.process(to_mono_int16(frame)))


class AgentAudioTrack(MediaStreamTrack):
    """The agent's voice as an aiortc audio track: 20 ms 48 kHz frames in real time."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._queue: deque[np.ndarray] = deque()
        self._upsample = StreamResampler(SAMPLE_RATE, OUT_RATE)
        self._chunker = FrameChunker(OUT_SAMPLES)
        self._silence = np.zeros(2 * OUT_SAMPLES, dtype=np.int16)
        self._pts = 0
        self._start: float | None = None
        self.frames_sent = 0
        self.late_frames = 0  # frames returned more than one frame after their due time
        self.max_lateness = 0.0  # seconds: the latest a frame was returned after its due time
        self.resyncs = 0
        self.overflows = 0

    @property
    def queued_frames(self) -> int:
        return len(self._queue)

    def push(self, frame16k: np.ndarray) -> None:
        """Queue one 20 ms 16 kHz frame of the agent's voice."""
        if self.readyState != "live":
            return
        for out in self._chunker.push(self._upsample.process(frame16k)):
            if len(self._queue) >= MAX_QUEUED_FRAMES:
                self._queue.popleft()
                self.overflows += 1
            self._queue.append(np.repeat(out, 2))  # interleaved stereo

    def clear(self) -> None:
        """Barge-in: drop everything queued; the next frame sent is silence."""
        self._queue.clear()
        self._chunker.clear()
        self._upsample.reset()

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        now = loop.time()
        if self._start is None:
            self._start = now
        late = now - (self._start + self.frames_sent * FRAME_S)
        if late < 0:
            await asyncio.sleep(-late)
            if self.readyState != "live":
                raise MediaStreamError
        else:
            self.max_lateness = max(self.max_lateness, late)
            if late > RESYNC_S:  # the sender stalled (loop overloaded): no burst of backlog
                self.resyncs += 1
                self._start = now - self.frames_sent * FRAME_S
            elif late > FRAME_S:
                self.late_frames += 1
        pcm = self._queue.popleft() if self._queue else self._silence
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
        frame.sample_rate = OUT_RATE
        frame.pts = self._pts
        frame.time_base = OUT_TIME_BASE
        self._pts += OUT_SAMPLES
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        self._queue.clear()
        super().stop()


class TrackFeed(TickedStream):
    """A WebRTC call's member of the media tick: the caller's frames (already 16 kHz, from
    `InboundAudio`) wait here until the tick hears them, and each frame the call plays on
    a tick goes to `AgentAudioTrack` (the tick's send step; aiortc encodes it)."""

    def __init__(self, track: AgentAudioTrack) -> None:
        super().__init__()
        self.track = track
        self._frames: deque[np.ndarray] = deque()
        self._times: deque[float] = deque()

    def join(self, tick: MediaTick) -> None:
        self._tick = tick
        tick.join(self)

    def leave(self) -> None:
        if self._tick is not None:
            self._tick.leave(self)
        self._tick = None
        self._frames.clear()
        self._times.clear()
        self._played.clear()

    def put_caller_frame(self, frame: np.ndarray, arrived: float) -> None:
        """A 16 kHz caller frame for the next tick, arrived at `arrived` (past
        `MAX_INBOX_FRAMES` waiting, the oldest is dropped: it came faster than real time)."""
        self._frames.append(frame)
        self._times.append(arrived)
        if len(self._frames) > MAX_INBOX_FRAMES:
            self._frames.popleft()
            self._times.popleft()
            self.dropped_in += 1
            if self.dropped_in == 1:
                log.warning("%s: caller audio arrives faster than real time; dropping the "
                            "oldest", self.call.call_id if self.call else "WebRTC call")

    def take_frames(self) -> tuple[list[np.ndarray], list[float]]:
        frames, times = self._frames, self._times
        n = min(len(frames), MAX_FRAMES_PER_TICK)
        return [frames.popleft() for _ in range(n)], [times.popleft() for _ in range(n)]

    async def send_audio(self, frame: np.ndarray) -> None:
        self._played.append(frame)

    async def send_frame(self, frame: np.ndarray) -> None:
        self.track.push(frame)
