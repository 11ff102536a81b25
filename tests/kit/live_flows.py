"""Barge-in call flows LIVE: a served gateway called over Twilio Media Streams (`LineClient`,
a phone line's far end on its own 20 ms clock) or SIP/RTP (`SipLineClient`), each flow's
caller channel sent in real time, its recording kept and scored on the call's clock
(`live_flow`). `benchmarks/bargein_calls_live.py` runs the sets and compares them with
replay; tests/sip_interop runs one flow."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from gateway.testing import replay_async
from tests.kit.bargein_call_flows import (
    LINES,
    CallFlow,
    Outcome,
    ScriptedSTT,
    agent_tts,
    caller_first_demo,
    score_events,
)
from tests.kit.clients import FRAME_S, TwilioClient, decode, encode, frame_slots
from tests.kit.clients.sip_line import SipLineClient

HOST = "127.0.0.1"
WIRE_RATE = 8000
WIRE_FRAME = WIRE_RATE * 20 // 1000  # samples in a 20 ms frame on the wire
AFTER_S = 3.0  # a live call goes on this long after the caller's sound (or the echo's start)
REPLY_SLACK_MS = 100.0  # a live reply starting further from replay's is not compared


class Router:
    """The served gateway's recogniser: each call gets the current flow's script."""

    def __init__(self) -> None:
        self.answers: tuple[str, ...] = ()

    def new_stream(self) -> ScriptedSTT:
        return ScriptedSTT(self.answers)

    def check(self) -> None:
        return None


class LineClient(TwilioClient):
    """A Twilio caller on a line: sends `caller` (int16, 8 kHz) in real time and echoes the
    agent's audio back, `echo_ms` after the far end played it, `echo_db` down."""

    def __init__(self, host: str, port: int, caller: np.ndarray, echo_db: float | None,
                 echo_ms: float) -> None:
        super().__init__(host, port)
        self.caller = caller
        self.gain = 0.0 if echo_db is None else 10 ** (echo_db / 20)
        self.delay = int(round(echo_ms * WIRE_RATE / 1000))
        self.line = np.zeros(len(caller) + 10 * WIRE_RATE, dtype=np.float32)
        self.t_line: float | None = None  # loop time of the line's sample 0
        self.play_at = 0  # the line's sample where the queued agent audio ends playing
        self.sent = asyncio.Event()

    def _sample(self, t: float) -> int:
        """The line's sample at loop time `t`."""
        assert self.t_line is not None
        return int(round((t - self.t_line) * WIRE_RATE))

    def _got_audio(self, data: bytes) -> None:
        if (self.gain and self.t_line is not None and data
                and len(data) % self.frame_bytes == 0):
            # A phone or a media server plays on its own 20 ms frame grid (its audio clock,
            # the one its microphone frames run on): audio that arrives plays from the next
            # slot, right after what is queued.
            next_slot = -(-self._sample(self.loop.time()) // WIRE_FRAME) * WIRE_FRAME
            start = max(self.play_at, next_slot)
            pcm = decode(self.codec, data).astype(np.float32) * self.gain
            self.play_at = start + len(pcm)
            at = start + self.delay
            if 0 <= at < len(self.line):
                n = min(len(pcm), len(self.line) - at)
                self.line[at : at + n] += pcm[:n]
        super()._got_audio(data)

    def _got_control(self, kind: str, msg: Any = None) -> None:
        if kind == "clear" and self.gain and self.t_line is not None:
            # the rest never plays
            self.line[max(0, self._sample(self.loop.time()) + self.delay) :] = 0.0
            self.play_at = 0
        super()._got_control(kind, msg)

    async def _mic(self) -> None:
        n = WIRE_FRAME
        t0 = self.loop.time()
        self.t_line = t0 - FRAME_S  # frame i holds what was said in the 20 ms before it
        async for i in frame_slots(self.loop, t0, len(self.caller) // n):
            frame = self.caller[i * n : (i + 1) * n] + self.line[i * n : (i + 1) * n]
            pcm = np.clip(np.round(frame), -32768, 32767).astype(np.int16)
            try:
                await self.send_audio(encode(self.codec, pcm))
            except Exception:
                break
        self.sent.set()


def _downsample(pcm: np.ndarray) -> np.ndarray:
    x = soxr.resample(pcm.astype(np.float32) / 32768.0, 16000, WIRE_RATE)
    return np.clip(np.round(x * 32768.0), -32768, 32767).astype(np.int16)


def _reply_start(events: list[dict[str, Any]], agent_ms: list[float], nth: int) -> float | None:
    """The first agent frame played after the `nth` response started (1-based)."""
    starts = [float(e["t_ms"]) for e in events if e["type"] == "agent.llm.response.start"]
    if len(starts) < nth:
        return None
    return next((t for t in agent_ms if t >= starts[nth - 1] - 0.5), None)


def _mapper(caller_rows: list[list[float]]) -> Any:
    """Caller-channel time (ms from its first sample) -> the call's clock, by the frame's
    recorded start."""
    starts = [float(r[0]) for r in caller_rows]

    def at(ms: float | None) -> float | None:
        if ms is None or not starts:
            return None
        j = min(int(ms // 20), len(starts) - 1)
        return starts[j] + (ms - j * 20)

    return at


def _scored(flow: CallFlow, events: list[dict[str, Any]], agent_ms: list[float],
            onset: float | None, end: float | None, start: float | None = None) -> Outcome:
    """`start`: where the reply started (default: from the agent's frames and events)."""
    out = Outcome(flow, events=events)
    if start is None:
        start = _reply_start(events, agent_ms, len(flow.answers))
    if start is None:
        out.ok, out.problem = False, "the reply did not start"
    out.reply_start_ms, out.onset_ms, out.end_ms = start or 0.0, onset, end
    score_events(out, events)
    return out


async def _recording(folder: Path, call_id: str) -> tuple[Path, dict[str, Any]]:
    for _ in range(400):
        wavs = sorted(folder.glob(f"*{call_id}*.wav"))
        if wavs and wavs[0].with_suffix(".json").exists():
            await asyncio.sleep(0.1)  # (written by a thread: let it finish)
            return wavs[0], json.loads(wavs[0].with_suffix(".json").read_text())
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no recording of {call_id}")


async def _call_twilio(port: int, caller: np.ndarray, echo_db: float | None,
                       echo_ms: float) -> str:
    """One live call over Twilio Media Streams; the call's id (in its recording's name)."""
    client = LineClient(HOST, port, caller, echo_db, echo_ms)
    await client.connect()
    await client.start()
    client.start_mic()
    await asyncio.wait_for(client.sent.wait(), len(caller) / WIRE_RATE + 30)
    await asyncio.sleep(0.2)
    await client.hangup_and_wait()
    await client.close()
    return client.call_id


async def _call_sip(port: int, caller: np.ndarray, echo_db: float | None,
                    echo_ms: float) -> str:
    """One live call over SIP/RTP to the SIP listener on `port`."""
    client = SipLineClient(HOST, port, caller, echo_db, echo_ms)
    try:
        await client.dial()
        client.start_mic()
        await asyncio.wait_for(client.sent.wait(), len(caller) / WIRE_RATE + 30)
        await asyncio.sleep(0.2)
        await client.hangup()
    finally:
        await client.close()
    return client.call_id


CALLS = {"twilio": _call_twilio, "sip": _call_sip}


@contextlib.asynccontextmanager
async def served(record_dir: str, via: str = "twilio", **app_args: Any
                 ) -> AsyncIterator[tuple[Any, Router, int]]:
    """The flows' agent (the demo without its greeting, the flows' recogniser router and
    voice) served on 127.0.0.1, recording into `record_dir`: the app, its router, and the
    port a `via` call dials (the HTTP one, or the SIP listener's). `app_args` go to
    `AtomsApp` (a SIP call's listener is on a free port unless `sip_port` says)."""
    from gateway.app import AtomsApp

    if via == "sip":
        app_args.setdefault("sip_port", 0)
    router = Router()
    app = AtomsApp(setup_handler=caller_first_demo, record_dir=record_dir, host=HOST,
                   **app_args)
    app.stt = router
    app.tts = agent_tts()
    port = await app.start(HOST, 0)
    try:
        if via == "sip":
            assert app.sip_port is not None
            port = app.sip_port
        yield app, router, port
    finally:
        await app.stop(drain_timeout=0.5)


async def live_flow(port: int, router: Router, folder: Path, replayed: Outcome,
                    via: str = "twilio") -> tuple[Outcome, Outcome, Path]:
    """The flow live over `via` ("twilio": `port` is the HTTP one; "sip": the SIP
    listener's) and its recording replayed: outcomes on the live call's clock."""
    flow = replayed.flow
    assert replayed.channel is not None
    if replayed.end_ms is not None:
        end_ms = replayed.end_ms + AFTER_S * 1000
    else:
        end_ms = replayed.reply_start_ms + flow.offset_s * 1000 + AFTER_S * 1000
    channel = replayed.channel[: int(end_ms * 16)]
    router.answers = flow.answers
    echo_db, echo_ms, _ = LINES[flow.line]
    call_id = await CALLS[via](port, _downsample(channel), echo_db, echo_ms)
    wav, timeline = await _recording(folder, call_id)
    media = timeline.get("media") or {}
    at = _mapper(media.get("caller") or [])
    agent_ms = [float(t) for t in media.get("agent") or []]
    live = _scored(flow, timeline["events"], agent_ms, at(replayed.onset_ms),
                   at(replayed.end_ms))
    if live.ok and abs(live.reply_start_ms - replayed.reply_start_ms) > REPLY_SLACK_MS:
        live.ok = False  # (the caller's sound fell elsewhere in the reply: not comparable)
        live.problem = (f"the reply started {live.reply_start_ms - replayed.reply_start_ms:+.0f}"
                        " ms from replay's (the caller's turn ended elsewhere)")
    r = await replay_async(wav, agent_channel=True)
    # (the recorded agent plays at its live moments: the reply starts where it did live)
    again = _scored(flow, r.events, agent_ms, live.onset_ms, live.end_ms,
                    start=live.reply_start_ms)
    return live, again, wav
