"""One 20 ms tick for many calls: the pacing shared by every transport and `replay`, and the
tick that carries every call's audio both ways.

Per-call tickers cost a task wake-up per call and frame, and a per-call audio edge five
numpy calls per frame each way. A shared tick runs each call's voice loop for the 20 ms
in turn: each call plays one frame, and the frames going out are encoded in one pass
(`media.batch_edge`, G.711 at 8 kHz; other wire formats through the call's own
`AudioEdge`) and sent; then the caller audio that arrived since the last tick is decoded in
one pass for all calls and each call takes its caller frames. Output first: a frame's send
time does not depend on how long the calls take to hear this tick's audio. Caller frames
keep their arrival times, so the echo pairing (`media.far_end_clock`) sees the network's
timing, not the tick's.

While the calls hear their audio the tick gives the event loop a turn every `LOOP_TURN_S`
of its work: a call's reply (a recogniser's answer, the agent's events, the first
frame of its speech) then waits for a slice of the tick, not for all of it (13 ms at 200
calls).

Sends must never wait inside the tick: a peer that stops reading would hold up every call.
Members (`TickedStream`: the provider media streams, web clients, AudioSocket) drop what
their peer cannot take; RTP sends (`sendto` on UDP) never wait.

What this tick paces: every call. The app's `MediaTick` (real clock) carries the provider
media streams, the web client (`/ws`), AudioSocket, SIP/RTP (`gateway.transports.rtp`:
one frame heard a tick from the jitter buffer, a None payload when no RTP came, heard as
silence without decoding; RFC 4733 and INFO digits heard before the tick's audio; the
agent's own key presses sent after its frame, `after_play`) and WebRTC
(`gateway.transports.webrtc_media.TrackFeed`: the tick hears the frames aiortc decoded,
with their arrival times, and pushes each frame the call plays to `AgentAudioTrack`,
whose short queue aiortc's sender pulls on its own 20 ms clock, as a sound card would).
`replay` (`gateway.testing`) runs its own `MediaTick` on a `VirtualClock`, so a recorded
call is driven as it was live. The voice loop (`Call`) has no ticker of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gateway.audio_edge import AudioEdge
from media.batch_edge import WIRE_FRAME, BatchEdge, codec_index
from media.codecs import WireFormat
from media.frames import SILENCE
from runtime.clock import Clock, RealClock
from runtime.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.call import Call

log = logging.getLogger(__name__)

TICK_S = 0.02
MAX_CATCH_UP_TICKS = 5  # after a stall, run at most this many ticks back to back
MAX_FRAMES_PER_TICK = 5  # caller frames one call may bring to a tick (a network burst)
MAX_INBOX_FRAMES = 100  # 2 s of caller audio waiting: a peer sending faster than real time
# A tick's work between turns of the event loop. At 200 Twilio calls 5 ms lowered the p99
# reply lag by 80-100 ms at the same CPU; 2 ms (and turns between catch-up ticks) cost
# 10-20 % more CPU (benchmarks/README.md).
LOOP_TURN_S = 0.005


class TickPacer:
    """Drift-free 20 ms ticks for a loop that serves many calls, on an injected clock (the
    real one live, a virtual one in replay)."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or RealClock()
        self.lag_max_ms = 0.0  # worst lateness of a tick (an overload sign)
        self.busy_lag_ms = 0.0  # the same since `restart`
        self.last_lag = 0.0  # seconds the last tick ran late
        self._next: float | None = None  # when the last tick was due (None: not started)

    def restart(self) -> None:
        """Count ticks from now (the first tick, or the first after an idle spell)."""
        self._next = self.clock.now()
        self.busy_lag_ms = 0.0

    async def next(self, busy: bool, wake: asyncio.Event, what: str) -> int:
        """`wait` for the next tick; with no calls (`busy` False) first sleep until `wake`
        is set, and count ticks afresh from then."""
        if not busy:
            if self.busy_lag_ms:
                log.info("%s: all calls ended; tick lag max %.1f ms while busy", what,
                         self.busy_lag_ms)
            wake.clear()
            await wake.wait()
            self.restart()
        return await self.wait()

    async def wait(self) -> int:
        """Sleep until the next tick is due; the number of ticks to run: one, or after a
        stall a few to catch up (a longer stall is let go)."""
        clock = self.clock
        due = (clock.now() if self._next is None else self._next) + TICK_S
        self._next = due
        if due > clock.now():
            await clock.sleep_until(due)
        now = clock.now()
        lag = now - due
        self.last_lag = lag
        self.lag_max_ms = max(self.lag_max_ms, lag * 1000)
        self.busy_lag_ms = max(self.busy_lag_ms, lag * 1000)
        if lag <= TICK_S:
            return 1
        n = min(MAX_CATCH_UP_TICKS, 1 + int(lag / TICK_S))
        self._next = now if lag > MAX_CATCH_UP_TICKS * TICK_S else due + (n - 1) * TICK_S
        return n


class TickedStream:
    """The tick's side of a WebSocket transport (subclasses send the payloads): an inbox of
    caller audio, a batch slot (G.711 at 8 kHz) or an edge of its own, and the frames its
    call played this tick. Sends never wait: when the peer stops reading (its socket is
    full) they are dropped and counted, so one stuck peer holds up no other call."""

    def __init__(self, writing_paused: Callable[[], bool] = lambda: False) -> None:
        self.call: Call | None = None
        self.edge: AudioEdge | None = None  # wire formats the batch does not take
        self.slot: int | None = None  # row in the tick's BatchEdge (G.711 at 8 kHz)
        self.codec = 0  # `media.batch_edge.codec_index` of its G.711 encoding
        self.dropped = 0  # messages the peer could not take
        self.dropped_in = 0  # caller frames dropped: they came faster than real time
        self._writing_paused = writing_paused
        self._inbox = bytearray()
        self._arrivals: list[float] = []  # one per whole wire frame in the inbox
        self._wire_frame = 1
        self._played: list[np.ndarray] = []
        self._tick: MediaTick | None = None

    def open_audio(self, wire: WireFormat, tick: MediaTick) -> None:
        """The stream's format is known: take a batch slot (G.711 at 8 kHz) or an edge."""
        if wire.encoding in ("pcmu", "pcma") and wire.sample_rate == 8000:
            self.slot = tick.edges.acquire()
            self.codec = codec_index(wire.encoding)
            self._wire_frame = WIRE_FRAME
        else:
            self.edge = AudioEdge(wire)
            self._wire_frame = wire.bytes_for_ms(20)
        self._tick = tick

    def close_audio(self) -> None:
        if self._tick is not None and self.slot is not None:
            self._tick.edges.release(self.slot)
        self.slot, self.edge, self._tick = None, None, None
        self._played.clear()

    def received(self, payload: bytes, arrived: float) -> None:
        """Caller audio for the next tick; each whole 20 ms of it arrived at `arrived`.

        A tick takes at most `MAX_FRAMES_PER_TICK` frames of a call, so a peer that sends
        faster than real time cannot make a tick long for everyone; past
        `MAX_INBOX_FRAMES` waiting, its oldest audio is dropped."""
        inbox, size, arrivals = self._inbox, self._wire_frame, self._arrivals
        before = len(inbox) // size
        inbox += payload
        arrivals.extend([arrived] * (len(inbox) // size - before))
        excess = len(arrivals) - MAX_INBOX_FRAMES
        if excess > 0:
            del inbox[: excess * size]
            del arrivals[:excess]
            self.dropped_in += excess
            if self.dropped_in == excess:
                log.warning("%s: caller audio arrives faster than real time; dropping "
                            "the oldest", self.call.call_id if self.call else "media stream")

    def take_payloads(self) -> tuple[list[bytes | None], list[float]]:
        """Whole 20 ms wire frames received since the last tick (at most
        `MAX_FRAMES_PER_TICK`), and their arrivals. A None payload is a frame of silence
        (SIP: no RTP came for it), heard without decoding."""
        inbox, size, arrivals = self._inbox, self._wire_frame, self._arrivals
        n = min(len(inbox) // size, MAX_FRAMES_PER_TICK)
        if n == 1:  # the usual tick: one frame came
            payload = bytes(inbox[:size])
            del inbox[:size]
            return [payload], [arrivals.pop(0)]
        if not n:
            return [], []
        data = bytes(inbox[: n * size])
        del inbox[: n * size]
        times = arrivals[:n]
        del arrivals[:n]
        return [data[i : i + size] for i in range(0, n * size, size)], times

    def take_frames(self) -> tuple[list[np.ndarray], list[float]]:
        """The same decoded by its own edge (not batched) into 16 kHz frames."""
        if self.edge is None or not self._arrivals:
            return [], []
        payloads, times = self.take_payloads()
        frames = self.edge.decode(b"".join(payloads))
        # (the resampler may hold back a frame at first: frames take the latest arrivals)
        return frames, (times[-1:] * len(frames) if len(frames) > len(times)
                        else times[len(times) - len(frames):])

    async def send_audio(self, frame: np.ndarray) -> None:
        """The loop played `frame`: it goes out with the tick's batch."""
        if self.slot is not None or self.edge is not None:
            self._played.append(frame)

    def take_played(self) -> list[np.ndarray]:
        played = self._played
        if played:  # (most ticks most calls play nothing: no new list for them)
            self._played = []
        return played

    def after_play(self) -> None:
        """The call has played this tick's frame (SIP: the agent's key presses go out
        while it is silent)."""

    def take_digits(self) -> list[str]:
        """Key presses that arrived with the media (SIP: RFC 4733, INFO), heard by the
        call before this tick's audio."""
        return []

    def play_now(self) -> None:
        """A talkspurt starts: its first frame goes out now, not at the next tick."""
        if self._tick is not None:
            self._tick.play_now(self)

    async def send_frame(self, frame: np.ndarray) -> None:
        """Encode with its own edge and send (not batched)."""
        if self.edge is not None:
            payload = self.edge.encode(frame)
            if payload:
                await self.send_payload(payload)

    async def send_payload(self, payload: bytes) -> None:
        """Send one 20 ms wire frame (the subclass's message), if `can_send`."""
        raise NotImplementedError

    def can_send(self) -> bool:
        """False (and counted) while the peer is not reading."""
        if not self._writing_paused():
            return True
        self.dropped += 1
        if self.dropped == 1:
            log.warning("%s: the peer is not reading; dropping what it cannot take",
                        self.call.call_id if self.call else "media stream")
        return False


class MediaTick:
    """The tick of the app's media streams, and of `replay` (on a virtual clock): members
    join when their call opens."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock or RealClock()
        self.edges = BatchEdge()
        self.pacer = TickPacer(self.clock)
        self._members: dict[int, TickedStream] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._playing_now: set[int] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        # told each tick's lateness in seconds (`gateway.metrics`); None: nobody asked
        self.on_lag: Callable[[float], None] | None = None

    def join(self, member: TickedStream) -> None:
        self._members[id(member)] = member
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="media-tick")

    def leave(self, member: TickedStream) -> None:
        self._members.pop(id(member), None)

    async def stop(self) -> None:
        if self._task is not None:
            await cancel_and_wait(self._task)
            self._task = None
            self.pacer = TickPacer(self.clock)  # a later join counts its ticks afresh

    async def _run(self) -> None:
        while True:
            n = await self.pacer.next(bool(self._members), self._wake, "media streams")
            if self.on_lag is not None:
                self.on_lag(max(0.0, self.pacer.last_lag))
            members = list(self._members.values())
            for _ in range(n):
                try:
                    await self.tick(members)
                except Exception:  # one bad tick must not end every call's audio
                    log.exception("media tick failed")

    async def tick(self, members: list[TickedStream]) -> None:
        """One 20 ms tick of `members`: one agent frame out each, then caller audio in.
        Frames go out first, so their timing does not depend on how long the calls take
        to hear this tick's audio."""
        failed = await self._play(members)
        await self._hear(members, failed)

    async def _play(self, members: list[TickedStream]) -> set[int]:
        """Each call plays one frame; all are encoded, then sent. The indexes of members
        whose voice loop raised."""
        failed: set[int] = set()
        for i, m in enumerate(members):
            call = m.call
            if call is None or call.closed:
                continue
            try:
                await call.play_tick()
                m.after_play()
            except Exception:
                failed.add(i)
                self._failed(call)
        # every frame is taken and encoded before the first send (a send may let a
        # `play_now` run, which must find its member's stash empty or in order)
        own: list[tuple[TickedStream, np.ndarray]] = []
        batched: list[TickedStream] = []
        slots, codecs, out = [], [], []
        for m in members:
            for frame in m.take_played():
                if m.slot is None:
                    own.append((m, frame))
                else:
                    batched.append(m)
                    slots.append(m.slot)
                    codecs.append(m.codec)
                    out.append(frame)
        payloads = self.edges.encode(slots, codecs, out)
        for m, frame in own:
            try:
                await m.send_frame(frame)
            except Exception:
                _send_failed(m)
        for m, payload in zip(batched, payloads, strict=True):
            try:
                await m.send_payload(payload)
            except Exception:
                _send_failed(m)
        return failed

    async def _hear(self, members: list[TickedStream], failed: set[int]) -> None:
        """The caller audio that arrived since the last tick, decoded (G.711 for every
        member at once) and heard by each call with its arrival times."""
        heard: list[tuple[list[np.ndarray], list[float]]] = []
        # round r decodes the r-th payload of every member that has one (a row per slot)
        rounds: list[tuple[list[int], int, list[int], list[int], list[bytes]]] = []
        for i, m in enumerate(members):
            if m.slot is None:
                heard.append(m.take_frames())
                continue
            payloads, times = m.take_payloads()
            frames: list[np.ndarray] = [SILENCE] * len(payloads)  # None: silence as it is
            heard.append((frames, times))
            for r, payload in enumerate(payloads):
                if payload is None:
                    continue
                while r >= len(rounds):
                    rounds.append(([], len(rounds), [], [], []))
                idx, _r, slots, codecs, batch = rounds[r]
                idx.append(i)
                slots.append(m.slot)
                codecs.append(m.codec)
                batch.append(payload)
        for idx, r, slots, codecs, batch in rounds:
            if not batch:  # (only silence in this round)
                continue
            for i, frame in zip(idx, self.edges.decode(slots, codecs, batch), strict=True):
                heard[i][0][r] = frame
        last = time.perf_counter()
        for i, (m, (frames, times)) in enumerate(zip(members, heard, strict=True)):
            if time.perf_counter() - last > LOOP_TURN_S:  # a turn for the event loop
                # (inline: an async generator cost more per call and tick)
                await asyncio.sleep(0)
                last = time.perf_counter()
            call = m.call
            if call is None or call.closed or i in failed:
                continue
            try:
                for digit in m.take_digits():
                    await call.dtmf(digit)
                for frame, t in zip(frames, times, strict=True):
                    await call.caller_frame(frame, t)
            except Exception:
                self._failed(call)

    def _failed(self, call: Call) -> None:
        """The call's voice loop raised: end that call (its transport then closes), not the
        tick; a task, so the tick goes on at once."""
        log.exception("call %s: voice loop failed; ending the call", call.call_id)
        if not call.closed:
            self._spawn(call.close("voice loop failed"))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def play_now(self, member: TickedStream) -> None:
        """Play `member`'s next frame now, between ticks: the first of a talkspurt."""
        if id(member) not in self._playing_now:
            self._playing_now.add(id(member))
            self._spawn(self._play_now(member))

    async def _play_now(self, member: TickedStream) -> None:
        self._playing_now.discard(id(member))
        call = member.call
        if call is None or call.closed or id(member) not in self._members:
            return
        try:
            await call.play_tick()
        except Exception:
            self._failed(call)
        for frame in member.take_played():  # one by one: a slot's frames go in order
            if member.slot is None:
                await _guarded(member.send_frame(frame), member)
            else:
                payload = self.edges.encode([member.slot], [member.codec], [frame])[0]
                await _guarded(member.send_payload(payload), member)


async def _guarded(send: Any, member: TickedStream) -> None:
    try:
        await send
    except Exception:
        _send_failed(member)


def _send_failed(member: TickedStream) -> None:
    call = member.call
    log.exception("call %s: sending audio failed", call.call_id if call else "?")
