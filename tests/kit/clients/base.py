"""What the far-end clients of the end-to-end tests share; one module per provider sits
beside this one, and `tests.kit.clients` re-exports them all. Each client speaks one
provider's wire protocol as that provider documents it (Twilio, Telnyx, Plivo, Exotel,
Vonage, the `/ws` web client, Asterisk AudioSocket over TCP), streams caller audio at
real-time pace from a drift-free ticker, and records what the gateway sends back (agent
audio with arrival times, control messages).

Codecs here are independent of the gateway's own: G.711 via Python's reference `audioop`,
L16 via numpy byte orders. Each client also plays the far end's part in playback marks: a
mark comes back once the audio sent before it would have finished playing in real time, and
a clear drops the rest (Twilio/Telnyx/Exotel report the dropped marks at once).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
import warnings
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import websockets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME_S = 0.020
OPEN: set[CallClient] = set()  # clients not yet closed (the fixtures close leftovers)


async def frame_slots(loop: asyncio.AbstractEventLoop, t0: float,
                      count: int | None = None) -> AsyncIterator[int]:
    """Frame numbers 0, 1, ... (`count` of them, or without end), each once its 20 ms slot
    after `t0` on `loop`'s clock has come: a microphone's ticker that does not drift."""
    i = 0
    while count is None or i < count:
        delay = t0 + i * FRAME_S - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield i
        i += 1


# ------------------------------------------------------------------------------ codecs


def encode(codec: str, pcm: np.ndarray) -> bytes:
    """int16 PCM to wire bytes: pcmu, pcma, l16 (little-endian), l16be (network order)."""
    raw = pcm.astype("<i2").tobytes()
    if codec == "pcmu":
        return audioop.lin2ulaw(raw, 2)
    if codec == "pcma":
        return audioop.lin2alaw(raw, 2)
    if codec == "l16":
        return raw
    if codec == "l16be":
        return pcm.astype(">i2").tobytes()
    raise ValueError(codec)


def decode(codec: str, data: bytes) -> np.ndarray:
    if codec == "pcmu":
        return np.frombuffer(audioop.ulaw2lin(data, 2), dtype="<i2")
    if codec == "pcma":
        return np.frombuffer(audioop.alaw2lin(data, 2), dtype="<i2")
    if codec == "l16":
        return np.frombuffer(data, dtype="<i2")
    if codec == "l16be":
        return np.frombuffer(data, dtype=">i2").astype(np.int16)
    raise ValueError(codec)


def bytes_per_frame(codec: str, rate: int) -> int:
    samples = rate * 20 // 1000
    return samples if codec in ("pcmu", "pcma") else 2 * samples


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ------------------------------------------------------------------------------ records


@dataclass
class AgentFrame:
    t: float  # event-loop time of arrival
    pcm: np.ndarray  # one 20 ms frame at the wire rate, decoded


@dataclass
class Control:
    t: float
    kind: str  # "clear", "mark", "hangup", "event", ...
    msg: Any = None


class FarEnd:
    """The provider's playback model: audio plays in real time after it arrives; a mark is
    reported when the audio before it has played; a clear empties the buffer."""

    def __init__(self, report: Any, report_dropped: bool) -> None:
        self.loop = asyncio.get_running_loop()
        self.play_end = 0.0
        self._report = report  # async fn(name)
        self._report_dropped = report_dropped
        self._pending: dict[str, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def audio(self, seconds: float) -> None:
        self.play_end = max(self.play_end, self.loop.time()) + seconds

    def mark(self, name: str) -> None:
        due = max(self.play_end, self.loop.time())
        self._pending[name] = self.loop.call_at(due, self._fire, name)

    def clear(self) -> None:
        self.play_end = self.loop.time()
        pending, self._pending = self._pending, {}
        for name, handle in pending.items():
            handle.cancel()
            if self._report_dropped:
                self._fire(name, keep=False)

    def _fire(self, name: str, keep: bool = True) -> None:
        if keep:
            self._pending.pop(name, None)
        task = self.loop.create_task(self._report(name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        for handle in self._pending.values():
            handle.cancel()
        self._pending.clear()


# ------------------------------------------------------------------------------ base client


class CallClient:
    """One simulated call. Subclasses implement the wire protocol."""

    provider = ""
    path = ""
    codec = "pcmu"
    rate = 8000

    def __init__(self, host: str, port: int, *, call_id: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        self.call_id = call_id or f"{self.provider}-{uuid.uuid4().hex[:10]}"
        self.headers = headers or {}
        self.frame_bytes = bytes_per_frame(self.codec, self.rate)
        self.agent_frames: list[AgentFrame] = []
        self.controls: list[Control] = []
        self.problems: list[str] = []  # framing or protocol faults in what the gateway sent
        self.close_code: int | None = None
        self.close_reason: str = ""
        self.closed = asyncio.Event()
        self.mic_stopped = False
        self._speech: deque[np.ndarray] = deque()
        self._speech_done: deque[tuple[int, asyncio.Future[float]]] = deque()
        self._sent_frames = 0
        self._seq = 0
        self._tasks: list[asyncio.Task[Any]] = []
        self._control_event = asyncio.Event()
        self._audio_event = asyncio.Event()
        self.loop = asyncio.get_running_loop()
        self.ws: Any = None
        self.far_end: FarEnd | None = None
        OPEN.add(self)

    # --- helpers for subclasses
    def seq(self) -> str:
        self._seq += 1
        return str(self._seq)

    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"

    def _got_audio(self, data: bytes) -> None:
        """Wire bytes of agent audio from one message: must be whole 20 ms frames."""
        t = self.loop.time()
        if not data or len(data) % self.frame_bytes:
            self.problems.append(f"agent audio of {len(data)} bytes is not whole 20 ms "
                                 f"frames of {self.frame_bytes} bytes")
            return
        pcm = decode(self.codec, data)
        n = self.rate * 20 // 1000
        for i in range(0, len(pcm), n):
            self.agent_frames.append(AgentFrame(t, pcm[i : i + n]))
        if self.far_end is not None:
            self.far_end.audio(len(pcm) / self.rate)
        self._audio_event.set()

    def _got_control(self, kind: str, msg: Any = None) -> None:
        self.controls.append(Control(self.loop.time(), kind, msg))
        self._control_event.set()

    # --- connection
    async def connect(self) -> None:
        self.ws = await websockets.connect(self.url(), additional_headers=self.headers,
                                           max_size=2**22, open_timeout=5)
        self.far_end = FarEnd(self._report_mark, self.report_dropped_marks)
        self._tasks.append(asyncio.create_task(self._receive_loop()))

    report_dropped_marks = True

    async def _receive_loop(self) -> None:
        try:
            async for message in self.ws:
                try:
                    self.on_message(message)
                except Exception as exc:  # a fault in what the gateway sent
                    self.problems.append(f"bad message from gateway: {exc!r}")
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code, self.close_reason = self.ws.close_code, self.ws.close_reason or ""
            if self.far_end is not None:
                self.far_end.close()
            self.closed.set()
            self._control_event.set()

    def on_message(self, message: str | bytes) -> None:
        raise NotImplementedError

    async def send_json(self, msg: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(msg))

    async def _report_mark(self, name: str) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.mark_played(name)

    async def mark_played(self, name: str) -> None:
        raise NotImplementedError

    # --- the microphone: one frame every 20 ms, silence unless speech is queued
    def start_mic(self) -> None:
        self._tasks.append(asyncio.create_task(self._mic()))

    async def _mic(self) -> None:
        n = self.rate * 20 // 1000
        silence = np.zeros(n, dtype=np.int16)
        if self.mic_stopped or self.closed.is_set():
            return
        async for _ in frame_slots(self.loop, self.loop.time()):
            frame = self._speech.popleft() if self._speech else silence
            try:
                await self.send_audio(encode(self.codec, frame))
            except (websockets.ConnectionClosed, ConnectionError):
                break
            self._sent_frames += 1
            while self._speech_done and self._speech_done[0][0] <= self._sent_frames:
                _, fut = self._speech_done.popleft()
                if not fut.done():
                    fut.set_result(self.loop.time())
            if self.mic_stopped or self.closed.is_set():
                break

    def say(self, pcm: np.ndarray) -> asyncio.Future[float]:
        """Queue speech (int16 at the wire rate) on the microphone. The future gives the
        loop time at which its last frame was sent."""
        n = self.rate * 20 // 1000
        pad = (-len(pcm)) % n
        pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
        frames = [pcm[i : i + n] for i in range(0, len(pcm), n)]
        queued_before = self._sent_frames + len(self._speech)
        self._speech.extend(frames)
        fut: asyncio.Future[float] = self.loop.create_future()
        self._speech_done.append((queued_before + len(frames), fut))
        return fut

    async def send_audio(self, payload: bytes) -> None:
        """One frame of caller audio (JSON providers: a media message)."""
        await self.send_json(self.media_msg(b64(payload)))

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        raise NotImplementedError

    # --- waiting on what the gateway sent
    async def wait_control(self, kind: str, timeout: float = 10.0) -> Control:
        async def find() -> Control:
            while True:
                for c in self.controls:
                    if c.kind == kind:
                        return c
                if self.closed.is_set():
                    raise AssertionError(f"{self.provider}: closed before {kind!r} "
                                         f"({self.close_code} {self.close_reason})")
                self._control_event.clear()
                await self._control_event.wait()

        return await asyncio.wait_for(find(), timeout)

    async def wait_audio(self, seconds: float, after: float = 0.0, timeout: float = 10.0) -> None:
        """Until `seconds` of agent audio arrived after loop time `after`."""
        need = round(seconds / FRAME_S)

        async def enough() -> None:
            while sum(1 for f in self.agent_frames if f.t >= after) < need:
                if self.closed.is_set():
                    raise AssertionError(f"{self.provider}: closed while waiting for audio")
                self._audio_event.clear()
                await self._audio_event.wait()

        await asyncio.wait_for(enough(), timeout)

    async def close(self) -> None:
        OPEN.discard(self)
        self.mic_stopped = True
        if self.ws is not None:
            await self.ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # --- protocol actions
    async def start(self) -> None:
        raise NotImplementedError

    async def dtmf(self, digit: str) -> None:
        raise NotImplementedError

    async def hangup(self) -> None:
        raise NotImplementedError

    async def hangup_and_wait(self, timeout: float = 5.0) -> None:
        self.mic_stopped = True
        await self.hangup()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
