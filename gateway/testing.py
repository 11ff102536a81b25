"""Replay a recorded call through the real voice loop under a virtual clock.

    from gateway.testing import replay
    result = replay("call.wav")            # mono: the caller; the demo agent answers
    result = replay("call.wav", app=setup) # your agent answers
    result = replay("stereo.wav", agent_channel=True)  # right channel is the agent

Inside a running event loop (an `async def` test) use the async form, which takes the same
arguments: `result = await replay_async("call.wav", app=setup)`. For tests, the replay kit
(`gateway.replay_kit`, and the `atoms_replay` pytest fixture of `gateway.pytest_plugin`)
replays caller turns given as text or WAVs and asserts on interrupts and what was heard.

Time is virtual: a minute of audio runs in well under a second (speech synthesis
counts as instantaneous), and the same input gives the same timeline every run.

Live equals replay: the call is driven by the same `MediaTick` that paces live calls, on a
`VirtualClock`. Each tick the call plays one frame, then hears the caller frames that have
arrived, with their arrival times. A plain WAV's caller frame `j` (samples from `j * 20 ms`)
arrives when its last sample is in, at `(j + 1) * 20 ms`, and is heard at that tick. A
recording made with `--record-dir` has its timeline beside it (`call.json`, see
`media.recording`), whose `media` lists give every caller frame's arrival and the tick that
heard it, and every agent frame's play time: replay then hears each frame at the same tick
as live, with the same arrival, and (`agent_channel`) plays the recorded agent audio in the
same talkspurts from the same moments, so its barge-ins fall where the live call's did.
The recorded agent frames' send times show when the live tick ran; replay's tick runs no
earlier (`_LivePacer`), so each frame goes out at its live moment and is paired with the
same far-end slot. A live tick that ran late enough to catch up (the event loop stalled:
the missed ticks run back to back, `TickPacer`) shows as a burst of frames after a gap with
no tick (`_late_runs`): replay runs the same catch-up there, and the gap is not taken for
the end of a talkspurt.
"""

from __future__ import annotations

import asyncio
import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import webrtcvad

from agent.events import SDKEvent
from gateway.audio_edge import AudioEdge
from gateway.call import Call, CallSettings
from gateway.media_tick import MAX_CATCH_UP_TICKS, TICK_S, MediaTick, TickedStream, TickPacer
from media.bargein import BargeInConfig
from media.codecs import WireFormat
from media.frames import FRAME_MS, FRAME_S, FRAME_SAMPLES, SAMPLE_RATE, rms_dbfs, split_frames
from media.recording import frame_positions, read_timeline, timeline_path
from media.resample import StreamResampler
from media.wavstream import read_pcm
from runtime.clock import VirtualClock

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
        """A picture of the call (matplotlib, `gateway.replay_plot`): both waveforms with a
        title, a legend, the transcript on the timeline, and labelled barge-in and reply
        latencies."""
        from gateway.replay_plot import save_plot

        save_plot(self, path)


class _ReplayStream(TickedStream):
    """The replay's member of the media tick: gives the tick the recording's caller frames
    when they are due (pull: the tick asks), and keeps what the call plays. With a line
    echo, what the call plays comes back into the caller frames that cover it. With a
    `wire` format (a phone line: 8 kHz mu-law), both directions cross it as on a live call:
    what the call plays is encoded to the wire and decoded by the far end before it echoes,
    and the caller channel (voice plus echo) is encoded at the far end and decoded back to
    16 kHz by the gateway's own `AudioEdge`."""

    def __init__(self, tick: MediaTick, frames: list[np.ndarray], starts: list[int],
                 arrivals: list[float], due: list[float], echo_gain: float,
                 echo_delay: int, samples: int, wire: WireFormat | None = None) -> None:
        super().__init__()
        self._tick = tick
        self.clock = tick.clock
        self.frames, self.starts, self.arrivals, self.due = frames, starts, arrivals, due
        self.next = 0  # the next caller frame to hear
        self.echo_gain = echo_gain
        self.echo_delay = echo_delay
        self.line = np.zeros(samples + echo_delay + 2 * FRAME_SAMPLES, dtype=np.float32)
        self.wire = wire
        if wire is not None:  # the line runs at the wire's rate; echo_delay is in its samples
            self._ratio = SAMPLE_RATE / wire.sample_rate
            self.echo_delay = int(round(echo_delay / self._ratio))
            self.line = np.zeros(int(len(self.line) / self._ratio) + FRAME_SAMPLES,
                                 dtype=np.float32)
            self._mic = StreamResampler(SAMPLE_RATE, wire.sample_rate)  # the far end's side
            self._gateway_in = AudioEdge(wire)  # the gateway's side, as live
            self._gateway_out = AudioEdge(wire)
        self.heard = np.zeros(samples, dtype=np.int16)  # the caller frames as the call heard them
        self.out: list[tuple[int, np.ndarray]] = []  # (sample, frame) the call played
        self._out_end = 0

    # -- the tick's side
    def take_frames(self) -> tuple[list[np.ndarray], list[float]]:
        now = self.clock.now() + VirtualClock.EPSILON
        frames, times = [], []
        while self.next < len(self.frames) and self.due[self.next] <= now:
            j = self.next
            self.next += 1
            frame = self.frames[j]
            if self.wire is not None:
                frame = self._over_wire(frame, self.starts[j])
            elif self.echo_gain:
                s = self.starts[j]
                echo = np.round(self.line[s : s + FRAME_SAMPLES])
                frame = np.clip(frame + echo, -32768, 32767).astype(np.int16)
            end = min(self.starts[j] + FRAME_SAMPLES, len(self.heard))
            self.heard[self.starts[j] : end] = frame[: max(0, end - self.starts[j])]
            frames.append(frame)
            times.append(self.arrivals[j])
        return frames, times

    def _over_wire(self, frame: np.ndarray, start: int) -> np.ndarray:
        """The caller's frame as the gateway hears it over the wire (echo added at the far
        end, at the wire's rate)."""
        assert self.wire is not None
        low = self._mic.process(frame).astype(np.float32)
        if self.echo_gain:
            s = int(round(start / self._ratio))
            low += self.line[s : s + len(low)]
        wire = self.wire.encode(np.clip(np.round(low), -32768, 32767).astype(np.int16))
        got = self._gateway_in.decode(wire)
        return got[0] if got else np.zeros(FRAME_SAMPLES, dtype=np.int16)

    async def send_audio(self, frame: np.ndarray) -> None:
        self._played.append(frame)

    async def send_frame(self, frame: np.ndarray) -> None:
        at = max(int(round(self.clock.now() * SAMPLE_RATE)), self._out_end)
        self._out_end = at + len(frame)
        self.out.append((at, frame.copy()))  # (the playout may reuse its buffer)
        if self.wire is not None:
            if self.echo_gain:  # the far end plays the decoded wire audio; its line echoes it
                played = self.wire.decode(self._gateway_out.encode(frame))
                s = int(round(at / self._ratio)) + self.echo_delay
                part = self.line[s : s + len(played)]
                part[:] = played[: len(part)] * self.echo_gain
        elif self.echo_gain:
            s = at + self.echo_delay
            part = self.line[s : s + len(frame)]
            part[:] = frame[: len(part)] * self.echo_gain

    # -- the rest of a `Transport`
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
    data, rate, channels = read_pcm(path)  # (a recording cut short by a crash reads too)
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


ONSET_WINDOW_MS = 10
ONSET_OVER_FLOOR_DB = 20.0
ONSET_FLOOR_MIN_DBFS = -100.0  # digital silence: its floor counts as this
ONSET_BRIDGE_WINDOWS = 3  # quiet windows inside speech (a stop's closure) that do not end it
ONSET_LOOK_BACK_MS = 300  # a louder stretch reaching further back is not the caller's onset
ONSET_GAP_MS = 200  # voiced stretches this close are one speech (not merged further: the
# agent's echo or an earlier word would then give an onset long before the barge-in)


def window_levels(pcm: np.ndarray, window_ms: int = ONSET_WINDOW_MS) -> np.ndarray:
    """RMS level (dBFS) of each whole `window_ms` window of `pcm`."""
    n = SAMPLE_RATE * window_ms // 1000
    w = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    power = np.mean(w * w, axis=1) / (32768.0 * 32768.0)
    return 10 * np.log10(np.maximum(power, 1e-30))


def noise_floor_dbfs(levels: np.ndarray) -> float:
    """The caller's noise floor: the 10th percentile of its window levels."""
    if not len(levels):
        return ONSET_FLOOR_MIN_DBFS
    return max(float(np.percentile(levels, 10)), ONSET_FLOOR_MIN_DBFS)


def speech_onset_ms(caller: np.ndarray, at_ms: float,
                    segments: list[tuple[float, float]] | None = None,
                    levels: np.ndarray | None = None) -> float:
    """The audible onset of the caller's speech that an interrupt at `at_ms` answered: the
    first 10 ms window over the caller's noise floor by 20 dB, of the loud stretch that
    holds the start of the last voiced segment (`segments`, e.g. `_segments`) before
    `at_ms`. A loud stretch that reaches more than 300 ms further back (the agent's echo
    all along) gives the segment's start instead."""
    if levels is None:
        levels = window_levels(caller)
    if not len(levels):
        return at_ms
    if segments is None:
        segments = _segments(caller, None, gap_ms=ONSET_GAP_MS, min_ms=60)
    loud = levels > noise_floor_dbfs(levels) + ONSET_OVER_FLOOR_DB
    w = ONSET_WINDOW_MS
    anchor = max((a for a, _ in segments or () if a <= at_ms), default=None)
    end = min(int(at_ms // w), len(loud) - 1)
    if anchor is None:  # no voiced segment: the loud stretch just before the interrupt
        i = end
        while i >= 0 and not loud[i]:
            i -= 1
        if i < 0:
            return at_ms
        anchor = i * w
    ia = min(int(anchor // w), len(loud) - 1)
    if not loud[ia]:  # voiced but not yet loud: the first loud window after
        for i in range(ia, end + 1):
            if loud[i]:
                return float(i * w)
        return float(anchor)
    limit = max(0, ia - ONSET_LOOK_BACK_MS // w)
    onset, quiet, i = ia, 0, ia - 1
    while i >= limit:
        if loud[i]:
            onset, quiet = i, 0
        else:
            quiet += 1
            if quiet > ONSET_BRIDGE_WINDOWS:
                return float(onset * w)
        i -= 1
    if ia * w < ONSET_LOOK_BACK_MS:  # the recording starts inside the stretch
        return float(onset * w)
    return float(anchor)


def load_media_timeline(path: str | Path) -> dict[str, Any] | None:
    """The `media` lists of a recording's timeline (`media.recording`), if it has them."""
    try:  # (`.json` when the call finished; `.jsonl` as it was when the process died)
        doc = read_timeline(path)
    except (OSError, ValueError):
        return None
    media = doc.get("media")
    if not isinstance(media, dict) or not media.get("caller"):
        return None
    return {**media, "events": doc.get("events") or []}


def recorded_settings(media: dict[str, Any] | None) -> CallSettings | None:
    """The settings a recording's call ran with where they were not the defaults (its
    timeline's `call.settings`: a SIP call's longer barge-in echo tail), or None."""
    for e in (media or {}).get("events") or []:
        if e.get("type") == "call.settings" and "echo_tail_ms" in e:
            return CallSettings(bargein=BargeInConfig(echo_tail_ms=int(e["echo_tail_ms"])))
    return None


def _tick_phase(seen: list[float]) -> float:
    """The phase (s, in [0, 20 ms)) of the live ticks' grid, from when they were seen at
    work (sending agent frames, hearing caller frames): a tick can be late, never early,
    and most run a little late, so the grid is the phase that makes them least late on
    average (one of their own offsets). (The earliest offset near the first one's is not
    it: a tick over 10 ms late looks early; nor is that of the hearings alone, which a
    loaded host delays more than the sends.)"""
    r = np.sort(np.fmod(np.asarray(seen, dtype=np.float64), TICK_S))
    if not len(r):
        return 0.0
    # mean lateness at phase r[k]: mean(r) - r[k] + TICK_S * (ticks before r[k]) / n
    k = int(np.argmin(TICK_S * np.arange(len(r)) / len(r) - r))
    return float(r[k])


@dataclass(frozen=True, slots=True)
class LateRun:
    """The live tick ran late enough to catch up (`TickPacer.wait`: the ticks it missed ran
    back to back, each sending an agent frame): the tick that sent agent frame `frame` (the
    one before it went out at `after`) ran at `ran` (seconds on the call's clock)."""

    frame: int
    after: float
    ran: float


def _late_runs(media: dict[str, Any] | None) -> list[LateRun]:
    """The live call's late ticks, read off its agent frames. A frame more than 1.5 ticks
    after the one before is a late tick's, not the first of a new talkspurt after a dry
    playout, when no other tick heard the caller in the gap (a dry playout's ticks go on
    hearing the caller every 20 ms, a stalled loop's do not) and either the ticks caught up
    (`m` frames back to back, each less than half a tick after the one before, after a gap
    their tick's lateness explains; the stalled tick may have heard the caller late) or it
    is one tick under 20 ms late (the gap under two ticks)."""
    if media is None or not media.get("agent"):
        return []
    times = [float(t) for t in media["agent"]]
    heard = sorted(float(r[1]) for r in media.get("caller") or ())
    tick = TICK_S * 1000
    out = []
    for i in range(1, len(times)):
        prev, ran = times[i - 1], times[i]
        gap = ran - prev
        if gap <= 1.5 * tick:
            continue
        m = 1  # frames of the catch-up: each one less than half a tick after the one before
        while i + m < len(times) and times[i + m] - times[i + m - 1] < 0.5 * tick:
            m += 1
        inside = heard[bisect.bisect_right(heard, prev):bisect.bisect_left(heard, ran)]
        starts = [h for k, h in enumerate(inside) if k == 0 or h - inside[k - 1] > 5.0]
        if starts and starts[0] - prev < 5.0:
            starts.pop(0)  # (the hearing of the tick that sent the frame before)
        if m > 1:
            late = (len(starts) <= 1
                    and (m >= MAX_CATCH_UP_TICKS or gap <= (m + 1.5) * tick))
        else:
            late = not starts and gap < 2 * tick
        if late:
            out.append(LateRun(i, prev / 1000, ran / 1000))
    return out


def _tick_runs(media: dict[str, Any] | None) -> dict[int, tuple[float, float]]:
    """When the live tick that sent each agent frame ran, as far as the frames show it:
    agent frame index -> (the frame before's send time, its own, in seconds; whether it is
    the first of a late tick's catch-up, `_late_runs`), for every frame a tick sent after
    the frame before within the talkspurt (1.5 ticks, or such a catch-up), not for a
    talkspurt's first."""
    if media is None or not media.get("agent"):
        return {}
    times = [float(t) / 1000 for t in media["agent"]]
    late = {r.frame for r in _late_runs(media)}
    return {i: (times[i - 1], times[i], i in late) for i in range(1, len(times))
            if times[i] - times[i - 1] <= 1.5 * TICK_S or i in late}


class _LivePacer(TickPacer):
    """The replay's tick pacing: on the grid, but the tick that is to send an agent frame
    runs no earlier than the live one that sent it (`_tick_runs`), while the replay keeps
    pace with the live call (its tick comes after the frame before went out live). A tick
    a few ms late live is then as late here, and one late enough to catch up runs the same
    ticks back to back (`TickPacer.wait`; no other wait here makes a catch-up), so every
    frame goes out at its live moment: the
    far-end slot each is paired with (`media.far_end_clock`) and what the ticks hear with
    it are live's (and after a stall longer than the catch-up, the grid moves as live)."""

    def __init__(self, clock: VirtualClock, runs: dict[int, tuple[float, float, bool]],
                 next_frame: Callable[[], int | None]) -> None:
        super().__init__(clock)
        self._runs = runs
        self._next_frame = next_frame  # the recorded frame the call plays next

    async def wait(self) -> int:
        due = (self.clock.now() if self._next is None else self._next) + TICK_S
        await self.clock.sleep_until(due)  # (a talkspurt's first frame may go out meanwhile)
        i = self._next_frame()
        run = self._runs.get(i) if i is not None else None
        if run is not None and run[0] - RUN_SLACK_S < due < run[1]:
            _, ran, caught_up = run
            # (no catch-up that live did not run: a frame a whole tick after this one went
            # out with the next tick, the one due now having had nothing to send live)
            if caught_up or ran - due <= TICK_S:
                await self.clock.sleep_until(ran)
        return await super().wait()


RUN_SLACK_S = 0.002  # a replay tick this far before the frame before's live send keeps pace


def _tick_grid(media: dict[str, Any]) -> tuple[float, list[float]]:
    """The live ticks' grid (s): its phase, and when a stall longer than the tick catches
    up moved it (to when the tick ran, `TickPacer.wait`)."""
    seen = [float(r[1]) / 1000 for r in media["caller"]]
    seen += [float(t) / 1000 for t in media.get("agent") or ()]
    moves = [r.ran for r in _late_runs(media)
             if r.ran - r.after > (MAX_CATCH_UP_TICKS + 1) * TICK_S]
    early = [t for t in seen if not moves or t < moves[0] - 0.5 * TICK_S] or seen
    return _tick_phase(early), moves


def _dry_ticks(media: dict[str, Any]) -> set[int]:
    """Agent frames that follow a late tick's catch-up a whole tick after the tick due next
    (it had nothing to send: a dry playout), though less than 1.5 ticks after the frame
    before (the catch-up left that one ahead of the grid). The catch-up's first tick was
    due in the tick after the frame before it and, `m` ticks caught up, `m` to `m + 1`
    ticks before it ran (`TickPacer.wait`); the tick after them is due `m` ticks later, or
    a tick after it ran when the stall was longer than the catch-up."""
    times = [float(t) for t in media.get("agent") or ()]
    tick = TICK_S * 1000
    out = set()
    for r in _late_runs(media):
        prev, ran = r.after * 1000, r.ran * 1000
        i = r.frame + 1
        while i < len(times) and times[i] - times[i - 1] < 0.5 * tick:
            i += 1
        m = i - r.frame
        if i >= len(times) or times[i] - times[i - 1] > 1.5 * tick:
            continue
        if ran - prev > (MAX_CATCH_UP_TICKS + 1) * tick:
            due_next = ran + tick
        else:
            due_next = min(prev + tick, ran - (m - 1) * tick) + m * tick
        if times[i] >= due_next + tick - 1.0:
            out.add(i)
    return out


def _caller_schedule(caller: np.ndarray, media: dict[str, Any] | None, tail_ms: int
                     ) -> tuple[list[np.ndarray], list[int], list[float], list[float], float]:
    """The caller frames (with `tail_ms` of silence after them), where each starts in the
    caller channel, when each arrived and when the tick hears it, and the call's first
    tick (in (0, 20] ms: the tick ran from the call's start). Plain audio: frame `j` arrives at `(j + 1) * 20 ms` and is heard at that tick; a
    recording's timeline gives both as they were live (its ticks' phase included)."""
    if media is None:
        n = len(caller) // FRAME_SAMPLES
        starts = [j * FRAME_SAMPLES for j in range(n)]
        arrivals = [(j + 1) * FRAME_S for j in range(n)]
        due = list(arrivals)
        first_tick = TICK_S
    else:
        rows = media["caller"]
        times = [float(r[0]) for r in rows]
        starts = frame_positions(times, FRAME_SAMPLES)
        arrivals = [t / 1000 + FRAME_S for t in times]
        heard = [float(r[1]) / 1000 for r in rows]
        phase, moves = _tick_grid(media)
        due = []
        for h in heard:
            grid = next((m for m in reversed(moves) if h >= m - 0.5 * TICK_S), phase)
            due.append(grid + round((h - grid) / TICK_S) * TICK_S)
        first_tick = phase if phase > VirtualClock.EPSILON else TICK_S
    frames = []
    for s in starts:
        f = caller[s : s + FRAME_SAMPLES]
        if len(f) < FRAME_SAMPLES:
            f = np.concatenate([f, np.zeros(FRAME_SAMPLES - len(f), dtype=np.int16)])
        frames.append(f)
    last_due = due[-1] if due else first_tick - TICK_S
    last_start = (starts[-1] + FRAME_SAMPLES) if starts else 0
    silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
    for k in range(1, tail_ms // FRAME_MS + 1):  # the tail: silence, one frame a tick
        frames.append(silence)
        starts.append(last_start + (k - 1) * FRAME_SAMPLES)
        arrivals.append(last_due + k * TICK_S)
        due.append(last_due + k * TICK_S)
    return frames, starts, arrivals, due, first_tick


def _agent_spurts(right: np.ndarray, media: dict[str, Any] | None
                  ) -> list[tuple[float, np.ndarray]]:
    """The recorded agent's talkspurts: (when its first frame played, its audio). From the
    timeline's play times when there is one: a frame more than 1.5 frames after the one
    before starts a talkspurt (a dry playout), unless a barge-in paused the agent in
    between. Live, the agent's audio stays queued after its last frame played until its
    utterance is reported (`agent.heard`: it played out, or a barge-in flushed it), so the
    talkspurt goes on in silence until then, or until the next talkspurt starts (a playout
    that ran dry mid-utterance: the next one plays when it did). A gap that a late tick's catch-up ends
    (`_late_runs`) is no new talkspurt: the playout was not dry, the tick was late (and
    replay's tick is late there too). Without a timeline: the agent channel's voiced
    stretches."""
    if media is None or not media.get("agent"):
        frames = split_frames(right)
        return [(a / 1000, np.concatenate(frames[int(a // FRAME_MS) : int(b // FRAME_MS)]))
                for a, b in _segments(right)]
    times = [float(t) for t in media["agent"]]
    starts = frame_positions(times, FRAME_SAMPLES)
    events = media.get("events") or []
    ends = sorted(float(e["t_ms"]) for e in events
                  if e.get("type") in ("agent.heard", "call.end"))
    firsts = set(_spurt_starts(media))
    spurts: list[tuple[int, list[np.ndarray]]] = []  # (index of the first frame, frames)
    for i, s in enumerate(starts):
        f = right[s : s + FRAME_SAMPLES]
        if len(f) < FRAME_SAMPLES:
            f = np.concatenate([f, np.zeros(FRAME_SAMPLES - len(f), dtype=np.int16)])
        if i in firsts:
            spurts.append((i, []))
        spurts[-1][1].append(f)
    out = []
    for k, (i, fs) in enumerate(spurts):
        last = times[i + len(fs) - 1] + FRAME_MS  # the end of its last frame
        # (from its last frame's send: a far end without marks, SIP/RTP, has it heard then)
        end = next((e for e in ends if e >= last - 1.5 * FRAME_MS), last)
        if k + 1 < len(spurts):  # (a playout dry mid-utterance: the next one plays on time)
            end = min(end, times[spurts[k + 1][0]])
        held = min(int(max(0.0, end - last) // FRAME_MS), MAX_HELD_FRAMES)
        fs = fs + [np.zeros(FRAME_SAMPLES, dtype=np.int16)] * held
        out.append((times[i] / 1000, np.concatenate(fs)))
    return out


MAX_HELD_FRAMES = 500  # 10 s of a talkspurt held after its last frame (a lost mark)


def _spurt_starts(media: dict[str, Any]) -> list[int]:
    """The index of each recorded talkspurt's first agent frame (`_agent_spurts`): after a
    gap of over 1.5 frames that no late tick explains (`_late_runs`), or a dry tick
    (`_dry_ticks`), unless a barge-in paused the agent in between."""
    times = [float(t) for t in media["agent"]]
    pauses = [float(e["t_ms"]) for e in media.get("events") or ()
              if e.get("type") == "bargein.pause"]
    caught_up = {r.frame for r in _late_runs(media)}
    dry = _dry_ticks(media)
    return [i for i, t in enumerate(times)
            if i == 0 or ((i in dry or (t - times[i - 1] > 1.5 * FRAME_MS
                                        and i not in caught_up))
                          and not any(times[i - 1] <= p <= t for p in pauses))]


def _next_live_frame(stream: _ReplayStream, media: dict[str, Any]) -> Callable[[], int | None]:
    """For `_LivePacer`: the index of the recorded agent frame the replay's call plays next
    (None: a held frame after a talkspurt's last, or nothing queued), from where its playout
    is in which recorded talkspurt (`_play_spurts` names them)."""
    firsts = _spurt_starts(media)
    bounds = list(zip(firsts, firsts[1:] + [len(media["agent"])], strict=True))

    def next_frame() -> int | None:
        call = stream.call
        pos = call.speaking.playout.position() if call is not None else None
        if pos is None or not pos[0].startswith(SPURT_PREFIX):
            return None
        first, end = bounds[int(pos[0][len(SPURT_PREFIX):]) - 1]
        i = first + int(round(pos[1] / FRAME_MS))
        return i if i < end else None

    return next_frame


SPURT_PREFIX = "recorded-"



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
    timeline: str | Path | None = None,
    wire: str | None = None,
) -> ReplayResult:
    """Run the recording through the voice loop; see `replay`.

    `timeline` is the recording's JSON timeline (default: the WAV's name with `.json`, when
    it exists and holds the `media` lists): the frames' live timing.
    `settings` default to those the timeline says the call ran with (`recorded_settings`).
    `echo_db` (e.g. -10) plays the line's echo: what the agent plays comes back into the
    caller's channel `echo_ms` later, that many dB down, as on a phone line (for recordings
    made without it, to check that the agent's own voice does not interrupt it).
    `wire` ("pcmu" or "pcma", 8 kHz) makes the line a phone line: the caller's channel and
    the echo cross G.711 at 8 kHz as on a live Twilio or SIP call (the caller channel
    should then be the caller alone; a live recording already holds what the wire did)."""
    if isinstance(audio, np.ndarray):
        caller, right = audio, agent_audio
    else:
        caller, right = load_wav(audio)
        if timeline is None:
            timeline = timeline_path(audio)
    if agent_channel and right is None:
        raise ValueError("--agent-channel needs a stereo file (caller left, agent right)")
    media = load_media_timeline(timeline) if timeline is not None else None
    if settings is None:
        settings = recorded_settings(media)
    frames, starts, arrivals, due, first_tick = _caller_schedule(caller, media, tail_ms)
    end_t = (due[-1] if due else first_tick) + 1e-9
    total = int(round(end_t / FRAME_S))
    samples = max(total * FRAME_SAMPLES, (starts[-1] + FRAME_SAMPLES) if starts else 0)

    clock = VirtualClock(start=-TICK_S)
    tick = MediaTick(clock)
    echo_delay = int(round(echo_ms * SAMPLE_RATE / 1000))
    echo_gain = 10 ** (echo_db / 20) if echo_db is not None else 0.0
    stream = _ReplayStream(tick, frames, starts, arrivals, due, echo_gain, echo_delay,
                           samples, WireFormat(wire, 8000) if wire else None)  # type: ignore[arg-type]
    if agent_channel and media is not None and media.get("agent"):
        # (the recorded agent's frames go out as they did live)
        tick.pacer = _LivePacer(clock, _tick_runs(media), _next_live_frame(stream, media))
    # The tick runs on its grid from the call's start, as the app's tick did live (the
    # call joins it as it opens); the call's clock starts at 0.
    clock.advance_to(first_tick - TICK_S)
    tick.join(stream)
    await clock.settle()
    clock.advance_to(0.0)
    if agent_channel:
        call = Call(stream, _RecordedAgent(), _NoSTT(), _NoTTS(),
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
        call = await gw.open_call(stream, call_id="replay", clock=clock,
                                  call_settings=settings)
    stream.call = call
    spurts = _agent_spurts(right, media) if agent_channel and right is not None else []
    player = asyncio.create_task(_play_spurts(call, clock, spurts)) if spurts else None
    try:
        await run_until(clock, call, end_t)
    finally:
        tick.leave(stream)
        await tick.stop()
        if player is not None:
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
    duration_ms = round(end_t * 1000, 1)
    await call.close("replay finished")

    played = np.zeros(total, dtype=bool)
    agent_out = np.zeros(samples, dtype=np.int16)
    for at, frame in stream.out:
        n = min(len(frame), len(agent_out) - at)
        if n <= 0:
            continue
        agent_out[at : at + n] = frame[:n]
        k = (at + FRAME_SAMPLES // 2) // FRAME_SAMPLES
        if k < total:
            played[k] = True
    reference = right if agent_channel else agent_out
    segs = _segments(caller, reference)
    # (onsets: voiced stretches not merged across pauses, so each starts its own speech)
    near = _segments(caller, reference, gap_ms=ONSET_GAP_MS, min_ms=60)
    levels = window_levels(caller)
    interrupts = []
    for t in call.interrupts:
        at_ms = round(t * 1000, 1)
        onset = speech_onset_ms(caller, at_ms, near, levels)
        interrupts.append({"at_ms": at_ms, "speech_onset_ms": onset,
                           "latency_ms": round(at_ms - onset, 1)})
    return ReplayResult(duration_ms=duration_ms, interrupts=interrupts, events=call.timeline,
                        speech_segments=segs, caller=stream.heard, agent=agent_out,
                        played=played)


async def _play_spurts(call: Call, clock: VirtualClock,
                       spurts: list[tuple[float, np.ndarray]]) -> None:
    """The recorded agent's talkspurts, each queued when its first frame played live."""
    for i, (t, pcm) in enumerate(spurts):
        await clock.sleep_until(t)
        if call.closed:
            return
        call.speaker.play(f"{SPURT_PREFIX}{i + 1}", pcm, last=True)


def replay(audio: str | Path | np.ndarray, app: Any = None, agent_channel: bool = False,
           **kwargs: Any) -> ReplayResult:
    """Replay a call recording (path or 16 kHz int16 array) and return what happened.

    For synchronous code (a plain test function, a script): it runs its own event loop.
    Inside a running loop (an `async def` test) use `await replay_async(...)`, which takes
    the same arguments; `replay` there raises a RuntimeError saying so."""
    require_no_loop("replay", "replay_async")
    return asyncio.run(replay_async(audio, app=app, agent_channel=agent_channel, **kwargs))


def require_no_loop(name: str, async_name: str) -> None:
    """Raise a RuntimeError naming `async_name` when called inside a running event loop,
    where `name` (which runs a loop of its own) cannot work."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"{name}() runs its own event loop, so it cannot be called inside a "
                       f"running one (an async test or coroutine): use "
                       f"`await {async_name}(...)` there, with the same arguments")


async def run_until(clock: VirtualClock, call: Call, end_t: float) -> None:
    """Move virtual time on, deadline by deadline (the tick's and the call's), until `end_t`
    or the call ends, letting the call settle at each."""
    while not call.closed:
        await _settle(call)
        nxt = clock.next_deadline()
        if nxt is None or nxt > end_t:
            break
        clock.advance_to(nxt)
    await _settle(call)


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
