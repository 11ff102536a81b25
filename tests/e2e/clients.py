"""Far-end clients for the end-to-end tests: each speaks one provider's wire protocol as that
provider documents it (Twilio, Telnyx, Plivo, Exotel, Vonage, the `/ws` web client, Asterisk
AudioSocket over TCP), streams caller audio at real-time pace from a drift-free ticker, and
records what the gateway sends back (agent audio with arrival times, control messages).

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
from dataclasses import dataclass
from typing import Any

import numpy as np
import websockets

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

FRAME_S = 0.020
OPEN: set[CallClient] = set()  # clients not yet closed (the fixtures close leftovers)


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
        t0 = self.loop.time()
        i = 0
        while not self.mic_stopped and not self.closed.is_set():
            delay = t0 + i * FRAME_S - self.loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
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
            i += 1

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


# ------------------------------------------------------------------------------ Twilio


class TwilioClient(CallClient):
    """Twilio Media Streams (bidirectional `<Connect><Stream>`), mu-law 8 kHz."""

    provider, path, codec, rate = "twilio", "/twilio/stream", "pcmu", 8000

    def __init__(self, *args: Any, params: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.account_sid = "AC" + uuid.uuid4().hex
        self.params = params or {"From": "+15550001111", "To": "+15550002222"}
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({"event": "connected", "protocol": "Call", "version": "1.0.0"})
        await self.send_json({
            "event": "start", "sequenceNumber": self.seq(), "streamSid": self.stream_sid,
            "start": {
                "accountSid": self.account_sid, "streamSid": self.stream_sid,
                "callSid": self.call_id, "tracks": ["inbound"],
                "customParameters": self.params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequenceNumber": self.seq(), "streamSid": self.stream_sid,
            "media": {"track": "inbound", "chunk": str(self._chunk),
                      "timestamp": str(20 * (self._chunk - 1)), "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "streamSid": self.stream_sid,
                              "sequenceNumber": self.seq(),
                              "dtmf": {"track": "inbound_track", "digit": digit}})

    async def hangup(self) -> None:
        await self.send_json({"event": "stop", "sequenceNumber": self.seq(),
                              "streamSid": self.stream_sid,
                              "stop": {"accountSid": self.account_sid, "callSid": self.call_id}})

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "mark", "sequenceNumber": self.seq(),
                              "streamSid": self.stream_sid, "mark": {"name": name}})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Twilio accepts only JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if msg.get("streamSid") != self.stream_sid:
            self.problems.append(f"{event}: streamSid {msg.get('streamSid')!r} is not ours")
        if event == "media":
            self._got_audio(base64.b64decode(msg["media"]["payload"], validate=True))
        elif event == "mark":
            self._got_control("mark", msg)
            assert self.far_end is not None
            self.far_end.mark(msg["mark"]["name"])
        elif event == "clear":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
        else:
            self.problems.append(f"unknown event {event!r}")


# ------------------------------------------------------------------------------ Telnyx


class TelnyxClient(CallClient):
    """Telnyx media streaming, bidirectional RTP mode, PCMA 8 kHz."""

    provider, path, codec, rate = "telnyx", "/telnyx/stream", "pcma", 8000

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_id = str(uuid.uuid4())
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({"event": "connected", "version": "1.0.0"})
        await self.send_json({
            "event": "start", "sequence_number": self.seq(), "stream_id": self.stream_id,
            "start": {
                "user_id": str(uuid.uuid4()), "call_control_id": self.call_id,
                "call_session_id": str(uuid.uuid4()), "from": "+15550003333",
                "to": "+15550004444", "client_state": None,
                "custom_parameters": {"campaign": "e2e"},
                "media_format": {"encoding": "PCMA", "sample_rate": 8000, "channels": 1},
            },
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequence_number": self.seq(), "stream_id": self.stream_id,
            "media": {"track": "inbound", "chunk": str(self._chunk),
                      "timestamp": str(20 * (self._chunk - 1)), "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "stream_id": self.stream_id,
                              "occurred_at": "2026-01-01T00:00:00.000000Z",
                              "sequence_number": self.seq(), "dtmf": {"digit": digit}})

    async def hangup(self) -> None:
        await self.send_json({"event": "stop", "sequence_number": self.seq(),
                              "stream_id": self.stream_id,
                              "stop": {"user_id": "u", "call_control_id": self.call_id}})

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "mark", "sequence_number": self.seq(),
                              "stream_id": self.stream_id, "mark": {"name": name}})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Telnyx expects JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if event == "media":
            self._got_audio(base64.b64decode(msg["media"]["payload"], validate=True))
        elif event == "mark":
            self._got_control("mark", msg)
            assert self.far_end is not None
            self.far_end.mark(msg["mark"]["name"])
        elif event == "clear":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
        else:
            self.problems.append(f"unknown event {event!r}")


# ------------------------------------------------------------------------------ Plivo


class PlivoClient(CallClient):
    """Plivo bidirectional audio stream, audio/x-l16 at 16 kHz. No `connected`; the call's
    end is the socket closing."""

    provider, path, codec, rate = "plivo", "/plivo/stream", "l16", 16000
    report_dropped_marks = False

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_id = str(uuid.uuid4())
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({
            "event": "start", "sequenceNumber": int(self.seq()),
            "start": {
                "callId": self.call_id, "streamId": self.stream_id,
                "accountId": "MA" + uuid.uuid4().hex[:18].upper(), "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-l16", "sampleRate": 16000},
            },
            "extra_headers": "crm=e2e;lang=en",
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequenceNumber": int(self.seq()), "streamId": self.stream_id,
            "media": {"track": "inbound", "timestamp": str(20 * (self._chunk - 1)),
                      "chunk": self._chunk, "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "sequenceNumber": int(self.seq()),
                              "streamId": self.stream_id,
                              "dtmf": {"track": "inbound", "digit": digit}})

    async def hangup(self) -> None:
        await self.ws.close()

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "playedStream", "sequenceNumber": int(self.seq()),
                              "streamId": self.stream_id, "name": name})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Plivo expects JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if event == "playAudio":
            media = msg["media"]
            if media.get("contentType") != "audio/x-l16" or media.get("sampleRate") != 16000:
                self.problems.append(f"playAudio format {media.get('contentType')!r} "
                                     f"{media.get('sampleRate')!r} is not the call's")
            self._got_audio(base64.b64decode(media["payload"], validate=True))
        elif event == "checkpoint":
            self._got_control("mark", msg)
            if msg.get("streamId") != self.stream_id:
                self.problems.append("checkpoint for another stream")
            assert self.far_end is not None
            self.far_end.mark(msg["name"])
        elif event == "clearAudio":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
            task = asyncio.create_task(self.send_json({
                "event": "clearedAudio", "sequenceNumber": int(self.seq()),
                "streamId": self.stream_id}))
            self._tasks.append(task)
        else:
            self.problems.append(f"unknown event {event!r}")


# ------------------------------------------------------------------------------ Exotel


class ExotelClient(CallClient):
    """Exotel Voicebot applet (AgentStream), raw 16-bit PCM at 8 kHz."""

    provider, path, codec, rate = "exotel", "/exotel/stream", "l16", 8000

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self._chunk = 0

    async def start(self) -> None:
        await self.send_json({"event": "connected"})
        await self.send_json({
            "event": "start", "sequence_number": self.seq(), "stream_sid": self.stream_sid,
            "start": {
                "stream_sid": self.stream_sid, "call_sid": self.call_id,
                "account_sid": "exotel-e2e", "from": "+919876543210", "to": "+918047491899",
                "custom_parameters": {"key1": "value1"},
                "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000",
                                 "bit_rate": "16"},
            },
        })

    def media_msg(self, payload_b64: str) -> dict[str, Any]:
        self._chunk += 1
        return {
            "event": "media", "sequence_number": self.seq(), "stream_sid": self.stream_sid,
            "media": {"chunk": str(self._chunk), "timestamp": str(20 * (self._chunk - 1)),
                      "payload": payload_b64},
        }

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "dtmf", "sequence_number": self.seq(),
                              "stream_sid": self.stream_sid,
                              "dtmf": {"digit": digit, "duration": "100"}})

    async def hangup(self) -> None:
        await self.send_json({"event": "stop", "sequence_number": self.seq(),
                              "stream_sid": self.stream_sid,
                              "stop": {"call_sid": self.call_id, "account_sid": "exotel-e2e",
                                       "reason": "callended"}})

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "mark", "sequence_number": self.seq(),
                              "stream_sid": self.stream_sid, "mark": {"name": name}})

    def on_message(self, message: str | bytes) -> None:
        if not isinstance(message, str):
            self.problems.append("binary message (Exotel expects JSON text)")
            return
        msg = json.loads(message)
        event = msg.get("event")
        if msg.get("stream_sid") != self.stream_sid:
            self.problems.append(f"{event}: stream_sid {msg.get('stream_sid')!r} is not ours")
        if event == "media":
            self._got_audio(base64.b64decode(msg["media"]["payload"], validate=True))
        elif event == "mark":
            self._got_control("mark", msg)
            assert self.far_end is not None
            self.far_end.mark(msg["mark"]["name"])
        elif event == "clear":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
        else:
            self.problems.append(f"unknown event {event!r}")


# ------------------------------------------------------------------------------ Vonage


class VonageClient(CallClient):
    """Vonage Voice API WebSocket: `websocket:connected` text, then binary L16 16 kHz frames.
    The call's end is the socket closing."""

    provider, path, codec, rate = "vonage", "/vonage/stream", "l16", 16000
    report_dropped_marks = False

    async def start(self) -> None:
        await self.send_json({"event": "websocket:connected",
                              "content-type": "audio/l16;rate=16000",
                              "uuid": self.call_id, "from": "447700900000",
                              "to": "447700900001"})

    async def send_audio(self, payload: bytes) -> None:
        await self.ws.send(payload)

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"event": "websocket:dtmf", "digit": digit, "duration": 260})

    async def hangup(self) -> None:
        await self.ws.close()

    async def mark_played(self, name: str) -> None:
        await self.send_json({"event": "websocket:notify", "payload": {"mark": name}})

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            if len(message) != self.frame_bytes:
                self.problems.append(f"binary message of {len(message)} bytes; Vonage wants "
                                     f"one 20 ms frame ({self.frame_bytes}) per message")
            self._got_audio(message)
            return
        msg = json.loads(message)
        action = msg.get("action")
        if action == "notify":
            self._got_control("mark", msg)
            assert self.far_end is not None
            self.far_end.mark(msg["payload"]["mark"])
        elif action == "clear":
            self._got_control("clear", msg)
            assert self.far_end is not None
            self.far_end.clear()
            task = asyncio.create_task(self.send_json({"event": "websocket:cleared"}))
            self._tasks.append(task)
        else:
            self.problems.append(f"unknown text message {msg!r}")


# ------------------------------------------------------------------------------ web client


class WebClient(CallClient):
    """The `/ws` web client: JSON `start` with a sample rate, binary PCM16, JSON events."""

    provider, path, codec, rate = "web", "/ws", "l16", 24000

    def __init__(self, *args: Any, token: str | None = None, **kw: Any) -> None:
        super().__init__(*args, **kw)
        if token is not None:
            self.headers["Authorization"] = f"Bearer {token}"
        self.started = asyncio.Event()
        self.events: list[dict[str, Any]] = []

    async def start(self) -> None:
        await self.send_json({"type": "start", "sample_rate": self.rate,
                              "context": {"page": "e2e"}})
        await asyncio.wait_for(self.started.wait(), 10)

    async def send_audio(self, payload: bytes) -> None:
        await self.ws.send(payload)

    async def dtmf(self, digit: str) -> None:
        await self.send_json({"type": "dtmf", "digit": digit})

    async def hangup(self) -> None:
        await self.send_json({"type": "hangup"})

    async def mark_played(self, name: str) -> None:  # the web protocol has no marks
        return None

    def on_message(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self._got_audio(message)
            return
        msg = json.loads(message)
        kind = msg.get("type")
        if kind == "started":
            self.call_id = msg["call_id"]
            if msg.get("sample_rate") != self.rate:
                self.problems.append(f"started at {msg.get('sample_rate')}, asked {self.rate}")
            self.started.set()
        elif kind == "clear":
            self._got_control("clear", msg)
        elif kind == "end":
            self._got_control("end", msg)
        else:
            self.events.append(msg)
            self._got_control("event", msg)


# ------------------------------------------------------------------------------ AudioSocket


class AudioSocketClient(CallClient):
    """Asterisk AudioSocket over TCP: kind(1) length(2, big-endian) payload; slin 8 kHz."""

    provider, codec, rate = "audiosocket", "l16", 8000

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.call_uuid = uuid.uuid4()
        self.call_id = str(self.call_uuid)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self._tasks.append(asyncio.create_task(self._receive_loop()))

    def _write(self, kind: int, payload: bytes = b"") -> None:
        assert self.writer is not None
        if self.writer.is_closing():
            raise ConnectionError("closed")
        self.writer.write(bytes((kind, len(payload) >> 8, len(payload) & 0xFF)) + payload)

    async def _receive_loop(self) -> None:
        assert self.reader is not None
        try:
            while True:
                head = await self.reader.readexactly(3)
                kind, length = head[0], (head[1] << 8) | head[2]
                payload = await self.reader.readexactly(length) if length else b""
                if kind == 0x10:
                    if length != self.frame_bytes:
                        self.problems.append(f"audio message of {length} bytes, not one "
                                             f"20 ms frame ({self.frame_bytes})")
                    self._got_audio(payload)
                elif kind == 0x00:
                    self._got_control("hangup")
                else:
                    self.problems.append(f"unexpected kind 0x{kind:02x}")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.closed.set()
            self._control_event.set()

    async def start(self) -> None:
        self._write(0x01, self.call_uuid.bytes)
        await self.writer.drain()  # type: ignore[union-attr]

    async def send_audio(self, payload: bytes) -> None:
        self._write(0x10, payload)
        await self.writer.drain()  # type: ignore[union-attr]

    async def dtmf(self, digit: str) -> None:
        self._write(0x03, digit.encode())
        await self.writer.drain()  # type: ignore[union-attr]

    async def hangup(self) -> None:
        self._write(0x00)
        await self.writer.drain()  # type: ignore[union-attr]

    async def mark_played(self, name: str) -> None:
        return None

    async def close(self) -> None:
        OPEN.discard(self)
        self.mic_stopped = True
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


CLIENTS: dict[str, type[CallClient]] = {
    c.provider: c
    for c in (TwilioClient, TelnyxClient, PlivoClient, ExotelClient, VonageClient, WebClient,
              AudioSocketClient)
}

