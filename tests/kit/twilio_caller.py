"""A minimal Twilio Media Streams far end for tests: `connected`, `start`, `media` (base64
mu-law 8 kHz, one 20 ms frame every 20 ms at real-time pace), `stop` in; `media`, `mark`,
`clear` out. Marks go back once the audio sent before them would have played (a clear
drops the rest and returns their marks at once, as Twilio does).

G.711 here is Python's reference `audioop`, independent of the gateway's own codec.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
import warnings
from collections import deque
from typing import Any

import numpy as np
import websockets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
FRAME = 160  # samples per 20 ms


class TwilioCaller:
    def __init__(self, url: str, params: dict[str, str] | None = None) -> None:
        self.url = url
        self.call_sid = "CA" + uuid.uuid4().hex
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.params = params or {"From": "+15550001111", "To": "+15550002222"}
        self.loop = asyncio.get_running_loop()
        self.frames: list[tuple[float, np.ndarray]] = []  # (arrival time, 20 ms of agent audio)
        self.controls: list[tuple[float, str]] = []  # (time, "clear" / "mark:<name>")
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self._speech: deque[np.ndarray] = deque()
        self._spoken: list[tuple[int, asyncio.Future[float]]] = []
        self._sent = 0
        self._seq = 0
        self._play_end = 0.0
        self._marks: dict[str, asyncio.TimerHandle] = {}
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._ws: Any = None

    # -- wire -------------------------------------------------------------------------
    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    async def _send(self, msg: dict[str, Any]) -> None:
        await self._ws.send(json.dumps(msg))

    async def connect(self) -> None:
        self._ws = await websockets.connect(self.url, open_timeout=5)
        self._tasks.append(asyncio.create_task(self._receive()))
        await self._send({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self._send({
            "event": "start", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
            "start": {"accountSid": "AC" + "0" * 32, "streamSid": self.stream_sid,
                      "callSid": self.call_sid, "tracks": ["inbound"],
                      "customParameters": self.params,
                      "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": RATE,
                                      "channels": 1}},
        })
        self._tasks.append(asyncio.create_task(self._mic()))

    async def _receive(self) -> None:
        try:
            async for message in self._ws:
                msg = json.loads(message)
                now = self.loop.time()
                event = msg.get("event")
                if event == "media":
                    pcm = np.frombuffer(audioop.ulaw2lin(
                        base64.b64decode(msg["media"]["payload"]), 2), dtype="<i2")
                    for i in range(0, len(pcm), FRAME):
                        self.frames.append((now, pcm[i:i + FRAME]))
                    self._play_end = max(self._play_end, now) + len(pcm) / RATE
                elif event == "mark":
                    name = msg["mark"]["name"]
                    self.controls.append((now, f"mark:{name}"))
                    due = max(self._play_end, now)
                    self._marks[name] = self.loop.call_at(due, self._mark_played, name)
                elif event == "clear":
                    self.controls.append((now, "clear"))
                    self._play_end = now
                    pending, self._marks = self._marks, {}
                    for name, handle in pending.items():
                        handle.cancel()
                        self._mark_played(name)
                self._changed.set()
        except websockets.ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            for handle in self._marks.values():
                handle.cancel()
            self.closed.set()
            self._changed.set()

    def _mark_played(self, name: str) -> None:
        self._marks.pop(name, None)
        msg = {"event": "mark", "sequenceNumber": self._next(), "streamSid": self.stream_sid,
               "mark": {"name": name}}
        self._tasks.append(asyncio.create_task(self._quiet_send(msg)))

    async def _quiet_send(self, msg: dict[str, Any]) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._send(msg)

    async def _mic(self) -> None:
        silence = np.zeros(FRAME, dtype=np.int16)
        t0 = self.loop.time()
        chunk = 0
        while not self.closed.is_set():
            delay = t0 + chunk * 0.02 - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            frame = self._speech.popleft() if self._speech else silence
            payload = base64.b64encode(audioop.lin2ulaw(frame.astype("<i2").tobytes(), 2))
            chunk += 1
            try:
                await self._send({
                    "event": "media", "sequenceNumber": self._next(),
                    "streamSid": self.stream_sid,
                    "media": {"track": "inbound", "chunk": str(chunk),
                              "timestamp": str(20 * (chunk - 1)), "payload": payload.decode()}})
            except websockets.ConnectionClosed:
                return
            self._sent += 1
            for item in [s for s in self._spoken if s[0] <= self._sent]:
                self._spoken.remove(item)
                if not item[1].done():
                    item[1].set_result(self.loop.time())

    # -- test API ---------------------------------------------------------------------
    def say(self, pcm: np.ndarray) -> asyncio.Future[float]:
        """Queue 8 kHz speech on the microphone; the future gives when its last frame went."""
        pcm = np.concatenate([pcm, np.zeros(-len(pcm) % FRAME, dtype=np.int16)])
        frames = [pcm[i:i + FRAME] for i in range(0, len(pcm), FRAME)]
        done: asyncio.Future[float] = self.loop.create_future()
        self._spoken.append((self._sent + len(self._speech) + len(frames), done))
        self._speech.extend(frames)
        return done

    def audio_after(self, t: float) -> np.ndarray:
        parts = [f for when, f in self.frames if when >= t]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    async def wait_for(self, condition: Any, timeout: float, what: str) -> None:
        async def loop() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()

        try:
            await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}") from None

    async def wait_audio(self, seconds: float, after: float = 0.0, timeout: float = 10) -> None:
        need = round(seconds / 0.02)
        await self.wait_for(lambda: sum(1 for t, _ in self.frames if t >= after) >= need,
                            timeout, f"{seconds} s of agent audio")

    async def wait_quiet(self, gap: float = 0.4, timeout: float = 15) -> None:
        """Until no agent audio has arrived for `gap` seconds."""
        async def loop() -> None:
            while True:
                last = self.frames[-1][0] if self.frames else 0.0
                rest = last + gap - self.loop.time()
                if rest <= 0:
                    return
                await asyncio.sleep(rest)

        await asyncio.wait_for(loop(), timeout)

    async def hangup(self) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._send({"event": "stop", "sequenceNumber": self._next(),
                              "streamSid": self.stream_sid,
                              "stop": {"accountSid": "AC" + "0" * 32, "callSid": self.call_sid}})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), 5)

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def rms_dbfs(pcm: np.ndarray) -> float:
    x = pcm.astype(np.float64)
    return float(20 * np.log10(max(np.sqrt(np.mean(x * x)) if len(x) else 0.0, 1e-9) / 32768))
