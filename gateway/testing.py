"""Replay a recorded call through the real voice loop under a virtual clock.

    from gateway.testing import replay
    result = replay("call.wav")            # mono: the caller; the demo agent answers
    result = replay("call.wav", app=setup) # your agent answers
    result = replay("stereo.wav", agent_channel=True)  # right channel is the agent

Time is virtual: a minute of audio runs in well under a second (speech synthesis
counts as instantaneous), and the same input gives the same timeline every run.
"""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

from agent.events import SDKEvent
from gateway.call import Call, CallSettings
from media.clock import VirtualClock
from media.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE, rms_dbfs, split_frames
from media.resample import StreamResampler

ECHO_ALLOWANCE_DB = 6.0
QUIET_ROUNDS = 6  # event-loop rounds without news that count as settled


@dataclass
class ReplayResult:
    """What happened in a replayed call (times in ms from the start of the recording)."""

    duration_ms: float
    interrupts: list[dict[str, float]]
    events: list[dict[str, Any]]
    speech_segments: list[tuple[float, float]]
    caller: np.ndarray
    agent: np.ndarray
    played: np.ndarray = field(repr=False)  # per frame: did the loop play agent audio

    def report(self) -> dict[str, Any]:
        return {
            "duration_ms": self.duration_ms,
            "interrupts": self.interrupts,
            "speech_segments": [{"start_ms": a, "end_ms": b} for a, b in self.speech_segments],
            "events": self.events,
        }

    def describe(self) -> str:
        """A readable timeline: speech, interrupts, what the agent said and what was heard."""
        lines = [f"duration {self.duration_ms / 1000:.2f} s"]
        rows: list[tuple[float, str]] = []
        for a, b in self.speech_segments:
            rows.append((a, f"caller speech {a / 1000:.2f}-{b / 1000:.2f} s"))
        for it in self.interrupts:
            rows.append((it["at_ms"], f"INTERRUPT (speech onset {it['speech_onset_ms'] / 1000:.2f} s,"
                                      f" latency {it['latency_ms']:.0f} ms)"))
        for ev in self.events:
            kind = ev["type"]
            if kind in ("agent.speak", "agent.llm.response.chunk"):
                rows.append((ev["t_ms"], f"agent says: {ev.get('text', '')}"))
            elif kind == "agent.heard":
                rows.append((ev["t_ms"], f"caller heard: {ev.get('text', '')}"))
            elif kind == "turn.end":
                rows.append((ev["t_ms"], f"caller said: {ev.get('text', '')}"))
            elif kind in ("call.hangup", "call.transfer", "system.dtmf"):
                rows.append((ev["t_ms"], kind))
        rows.sort(key=lambda r: r[0])
        lines += [f"{t / 1000:8.2f} s  {text}" for t, text in rows]
        lines.append(f"{len(self.interrupts)} interrupt(s)")
        return "\n".join(lines)

    def plot(self, path: str) -> None:
        """Both waveforms with speech, playout and interrupt marks (matplotlib)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t = np.arange(len(self.caller)) / SAMPLE_RATE
        fig, axes = plt.subplots(2, 1, figsize=(12, 5), sharex=True)
        axes[0].plot(t, self.caller, lw=0.4, color="tab:blue")
        axes[0].set_ylabel("caller")
        for a, b in self.speech_segments:
            axes[0].axvspan(a / 1000, b / 1000, color="tab:green", alpha=0.15)
        ta = np.arange(len(self.agent)) / SAMPLE_RATE
        axes[1].plot(ta, self.agent, lw=0.4, color="tab:orange")
        axes[1].set_ylabel("agent (played)")
        for it in self.interrupts:
            for ax in axes:
                ax.axvline(it["at_ms"] / 1000, color="red", lw=1.2)
        axes[1].set_xlabel("seconds")
        fig.tight_layout()
        fig.savefig(path, dpi=100)
        plt.close(fig)


class _ReplayTransport:
    """Collects what the loop plays, frame-aligned with the recording."""

    def __init__(self) -> None:
        self.tick = 0
        self.out: dict[int, np.ndarray] = {}

    async def send_audio(self, frame: np.ndarray) -> None:
        self.out[self.tick] = frame

    async def clear_audio(self) -> None:
        return None  # nothing is buffered past the loop in a replay

    async def hangup(self) -> None:
        return None  # the call closes itself; the replay stops when it has

    async def transfer(self, target: str) -> None:
        return None

    async def send_event(self, event: SDKEvent) -> None:
        return None


class _RecordedAgent:
    """Session stand-in for --agent-channel: the recording's right channel is the agent."""

    async def deliver(self, event: SDKEvent) -> None:
        return None

    def set_output(self, fn: Any) -> None:
        return None

    async def close(self, reason: str = "") -> None:
        return None


def load_wav(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """(caller, agent-or-None) as 16 kHz int16 from a mono or stereo 16-bit WAV."""
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: only 16-bit PCM WAV is supported")
        rate, channels = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    if channels not in (1, 2):
        raise ValueError(f"{path}: expected 1 or 2 channels, got {channels}")
    chans = [data[c::channels].copy() for c in range(channels)]
    if rate != SAMPLE_RATE:
        chans = [_resample_whole(c, rate) for c in chans]
    return chans[0], (chans[1] if channels == 2 else None)


def _resample_whole(pcm: np.ndarray, rate: int) -> np.ndarray:
    rs = StreamResampler(rate, SAMPLE_RATE)
    return np.concatenate([rs.process(pcm), rs.flush()])


def _segments(pcm: np.ndarray, reference: np.ndarray | None = None, gap_ms: int = 300,
              min_ms: int = 100) -> list[tuple[float, float]]:
    """Stretches of the caller's own voice: voiced frames (webrtcvad, mode 3), merged across
    short gaps. With the agent's audio as `reference`, frames no louder than the agent's
    last 200 ms minus ECHO_ALLOWANCE_DB count as echo, not as the caller (so quiet speech
    under a loud agent starts late here, and reported latencies err on the short side)."""
    vad = webrtcvad.Vad(3)
    frames = split_frames(pcm)
    ref_db = np.full(len(frames), -120.0)
    if reference is not None:
        ref = split_frames(reference)[: len(frames)]
        levels = np.array([rms_dbfs(f) for f in ref] + [-120.0] * (len(frames) - len(ref)))
        levels = np.maximum(levels, -120.0)
        for i in range(len(frames)):
            ref_db[i] = levels[max(0, i - 10) : i + 1].max()
    voiced = [vad.is_speech(f.tobytes(), SAMPLE_RATE)
              and max(rms_dbfs(f), -120.0) > ref_db[i] - ECHO_ALLOWANCE_DB
              for i, f in enumerate(frames)]
    segs: list[list[int]] = []
    for i, v in enumerate(voiced):
        if not v:
            continue
        if segs and (i - segs[-1][1]) * FRAME_MS <= gap_ms:
            segs[-1][1] = i
        else:
            segs.append([i, i])
    return [(a * FRAME_MS, (b + 1) * FRAME_MS) for a, b in segs if (b - a + 1) * FRAME_MS >= min_ms]


async def replay_async(
    audio: str | Path | np.ndarray,
    app: Any = None,
    agent_channel: bool = False,
    agent_audio: np.ndarray | None = None,
    settings: CallSettings | None = None,
    stt: Any = None,
    tts: Any = None,
    tail_ms: int = 1000,
    echo_db: float | None = None,
    echo_ms: float = 40.0,
) -> ReplayResult:
    """Run the recording through the voice loop; see `replay`.

    `echo_db` (e.g. -10) plays the line's echo: what the agent plays comes back into the
    caller's channel `echo_ms` later, that many dB down, as on a phone line (for recordings
    made without it, to check that the agent's own voice does not interrupt it)."""
    if isinstance(audio, np.ndarray):
        caller, right = audio, agent_audio
    else:
        caller, right = load_wav(audio)
    if agent_channel and right is None:
        raise ValueError("--agent-channel needs a stereo file (caller left, agent right)")
    clock = VirtualClock()
    transport = _ReplayTransport()

    if agent_channel:
        call = Call(transport, _RecordedAgent(), _NoSTT(), _NoTTS(),
                    settings=settings, clock=clock, call_id="replay")
        await call.start()
    else:
        from gateway.app import AtomsApp

        gw = AtomsApp(setup_handler=app)
        if stt is not None:
            gw.stt = stt
        if tts is not None:
            gw.tts = tts
        gw.load_engines()
        call = await gw.open_call(transport, call_id="replay", clock=clock,
                                  call_settings=settings)

    frames = split_frames(caller)
    n_tail = tail_ms // FRAME_MS
    total = len(frames) + n_tail
    agent_frames = split_frames(right) if (agent_channel and right is not None) else []
    agent_segments = _segments(right) if agent_channel and right is not None else []
    seg_starts = {int(a // FRAME_MS): (int(a // FRAME_MS), int(b // FRAME_MS))
                  for a, b in agent_segments}
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    echo_delay = int(round(echo_ms * SAMPLE_RATE / 1000))
    echo_gain = 10 ** (echo_db / 20) if echo_db is not None else 0.0
    line = np.zeros((total + 1) * FRAME_SAMPLES + echo_delay, dtype=np.float32)  # agent, delayed
    caller_in = caller.copy()  # what the loop heard: the caller plus the echo

    for i in range(total):
        if call.closed:
            break
        transport.tick = i
        if i in seg_starts:
            a, b = seg_starts[i]
            call.speaker.play(f"recorded-{a}", np.concatenate(agent_frames[a:b]))
        clock.advance_to(i * FRAME_MS / 1000)
        await _settle(call)
        frame = frames[i] if i < len(frames) else silence
        if echo_gain:
            played_now = transport.out.get(i)
            at = i * FRAME_SAMPLES + echo_delay
            if played_now is not None:
                line[at : at + FRAME_SAMPLES] = played_now * echo_gain
            heard = line[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            frame = np.clip(frame + np.round(heard), -32768, 32767).astype(np.int16)
            part = caller_in[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES]
            part[:] = frame[: len(part)]
        await call.caller_frame(frame)
        await _settle(call)

    duration_ms = total * FRAME_MS
    await call.close("replay finished")
    played = np.zeros(total, dtype=bool)
    agent_out = np.zeros(total * FRAME_SAMPLES, dtype=np.int16)
    for tick, frame in transport.out.items():
        if tick < total:
            played[tick] = True
            agent_out[tick * FRAME_SAMPLES : (tick + 1) * FRAME_SAMPLES] = frame
    reference = right if agent_channel else agent_out
    segs = _segments(caller, reference)
    interrupts = []
    for t in call.interrupts:
        at_ms = round(t * 1000, 1)
        onset = max((a for a, _ in segs if a <= at_ms), default=at_ms)
        interrupts.append({"at_ms": at_ms, "speech_onset_ms": onset,
                           "latency_ms": round(at_ms - onset, 1)})
    return ReplayResult(duration_ms=duration_ms, interrupts=interrupts, events=call.timeline,
                        speech_segments=segs, caller=caller_in, agent=agent_out, played=played)


def replay(audio: str | Path | np.ndarray, app: Any = None, agent_channel: bool = False,
           **kwargs: Any) -> ReplayResult:
    """Replay a call recording (path or 16 kHz int16 array) and return what happened."""
    return asyncio.run(replay_async(audio, app=app, agent_channel=agent_channel, **kwargs))


async def _settle(call: Call) -> None:
    """Let the session and speech pipeline finish reacting before time moves on: run the
    event loop until a few rounds pass with no new event and no speech being made."""
    while True:
        seen = len(call.timeline)
        for _ in range(QUIET_ROUNDS):
            await asyncio.sleep(0)
        while call.speaker.busy and not call.closed:
            await asyncio.sleep(0.0005)  # synthesis runs in real time; virtual time waits
        if len(call.timeline) == seen:
            return


class _NoSTT:
    """Recorded-agent mode transcribes nothing."""

    def new_stream(self) -> _NoSTT:
        return self

    def feed(self, frame: np.ndarray) -> list[Any]:
        return []

    def end_of_turn(self) -> None:
        return None

    def close(self) -> None:
        return None


class _NoTTS:
    async def synthesize(self, text: str) -> Any:  # pragma: no cover - never called
        if False:
            yield np.zeros(0, dtype=np.int16)
