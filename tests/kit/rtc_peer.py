"""An aiortc caller for tests and benchmarks: HTTP signalling, a scripted microphone,
a recorder of the agent's audio, and the `events` data channel.

    caller = RtcCaller(base_url)
    await caller.connect()
    await caller.wait_event(lambda e: e["type"] == "agent.speak")
    onset = caller.mic.play(speech_pcm16k)      # returns the frame index of the onset
    ...
    await caller.close()
"""

from __future__ import annotations

import asyncio
import fractions
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame

RATE = 16_000
FRAME = 320
LOUD_DBFS = -45.0


class ScriptedMic(MediaStreamTrack):
    """A microphone that plays what the test queues (16 kHz), silence otherwise.

    `sent_at[i]` is the loop time at which frame i left `recv()`, so a test can tell when
    the first frame of a played clip went out."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self._pcm = np.zeros(0, dtype=np.int16)
        self._n = 0
        self._start: float | None = None
        self.sent_at: list[float] = []
        self._silence = np.zeros(FRAME, dtype=np.int16)

    def play(self, pcm: np.ndarray) -> int:
        """Queue `pcm` after whatever is queued; returns the index of its first frame."""
        first = self._n + (len(self._pcm) + FRAME - 1) // FRAME
        pad = (-len(self._pcm)) % FRAME
        self._pcm = np.concatenate([self._pcm, np.zeros(pad, np.int16), pcm.astype(np.int16)])
        return first

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        wait = self._start + self._n * 0.02 - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if len(self._pcm):
            chunk = self._pcm[:FRAME]
            self._pcm = self._pcm[FRAME:]
            if len(chunk) < FRAME:
                chunk = np.concatenate([chunk, np.zeros(FRAME - len(chunk), np.int16)])
        else:
            chunk = self._silence
        frame = AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = RATE
        frame.pts = self._n * FRAME
        frame.time_base = fractions.Fraction(1, RATE)
        self._n += 1
        self.sent_at.append(loop.time())
        return frame


@dataclass
class Received:
    at: float  # loop time of arrival
    dbfs: float
    samples: int  # per channel
    rate: int
    pts: int | None


class RtcCaller:
    """One WebRTC caller. Keeps all received frame levels and data-channel events."""

    def __init__(self, base_url: str, token: str | None = None, keep_audio: bool = False,
                 channel: bool = True, mic: bool = True) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.keep_audio = keep_audio
        self.pc = RTCPeerConnection()
        self.mic = ScriptedMic()
        if mic:
            self.pc.addTrack(self.mic)
        else:  # a listen-only page: it hears the agent, sends no audio
            self.pc.addTransceiver("audio", direction="recvonly")
        self.channel = self.pc.createDataChannel("events") if channel else None
        self.events: list[dict[str, Any]] = []
        self.event_times: list[float] = []
        self.frames: list[Received] = []
        self.audio: list[np.ndarray] = []
        self.id: str | None = None
        self.states: list[str] = []
        self._changed = asyncio.Event()
        self._reader: asyncio.Task[None] | None = None
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)
        if self.channel is not None:
            self.channel.on("message", self._on_message)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    async def connect(self, timeout: float = 20.0, context: dict[str, Any] | None = None) -> None:
        await self.pc.setLocalDescription(await self.pc.createOffer())
        body: dict[str, Any] = {"sdp": self.pc.localDescription.sdp, "type": "offer"}
        if context:
            body["context"] = context
        async with aiohttp.ClientSession() as http:
            async with http.post(self.base_url + "/webrtc/offer", json=body,
                                 headers=self._headers()) as res:
                if res.status != 200:
                    raise RuntimeError(f"offer refused: {res.status} {await res.text()}")
                answer = await res.json()
        self.id = answer["id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        await self.wait(lambda: self.pc.connectionState == "connected", timeout)

    async def delete(self) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.delete(f"{self.base_url}/webrtc/{self.id}",
                                   headers=self._headers()) as res:
                return res.status

    def send(self, obj: dict[str, Any] | str) -> None:
        assert self.channel is not None
        self.channel.send(obj if isinstance(obj, str) else json.dumps(obj))

    async def close(self) -> None:
        self.mic.stop()
        await self.pc.close()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
            self._reader = None

    # -- observation ---------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio":
            self._reader = asyncio.create_task(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                frame = await track.recv()
                data = frame.to_ndarray().reshape(-1, len(frame.layout.channels))
                pcm = data.mean(axis=1)
                rms = float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))
                dbfs = 20 * np.log10(max(rms, 1e-3) / 32768.0)
                self.frames.append(Received(loop.time(), dbfs, len(pcm), frame.sample_rate,
                                            frame.pts))
                if self.keep_audio:
                    self.audio.append(pcm.astype(np.int16))
                self._changed.set()
        except MediaStreamError:
            pass

    def _on_message(self, data: str | bytes) -> None:
        self.events.append(json.loads(data))
        self.event_times.append(asyncio.get_running_loop().time())
        self._changed.set()

    def _on_state(self) -> None:
        self.states.append(self.pc.connectionState)
        self._changed.set()

    async def wait(self, cond: Callable[[], Any], timeout: float) -> Any:
        """Wait until `cond()` is truthy (checked on every frame, event and state change)."""
        async with asyncio.timeout(timeout):
            while not (result := cond()):
                self._changed.clear()
                await self._changed.wait()
            return result

    async def wait_event(self, pred: Callable[[dict[str, Any]], bool],
                         timeout: float = 20.0, start: int = 0) -> dict[str, Any]:
        return await self.wait(
            lambda: next((e for e in self.events[start:] if pred(e)), None), timeout)

    def loud(self, threshold: float = LOUD_DBFS) -> list[Received]:
        return [f for f in self.frames if f.dbfs > threshold]

    def received_ms(self, frames: list[Received] | None = None) -> float:
        frames = self.frames if frames is None else frames
        return sum(1000.0 * f.samples / f.rate for f in frames)


def loud_runs(frames: list[Received], gap_ms: float = 600.0,
              threshold: float = LOUD_DBFS) -> list[tuple[int, int]]:
    """Index ranges [first, last] of loud stretches in `frames`, joined across quiet gaps
    shorter than `gap_ms` (the pauses between words and sentences)."""
    runs: list[tuple[int, int]] = []
    quiet_ms = 0.0
    start = last = None
    for i, f in enumerate(frames):
        if f.dbfs > threshold:
            if start is None:
                start = i
            last = i
            quiet_ms = 0.0
        elif start is not None:
            quiet_ms += 1000.0 * f.samples / f.rate
            if quiet_ms >= gap_ms:
                runs.append((start, last))  # type: ignore[arg-type]
                start = last = None
    if start is not None:
        runs.append((start, last))  # type: ignore[arg-type]
    return runs
