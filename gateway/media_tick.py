"""One 20 ms tick for many calls: the pacing shared by SIP and the WebSocket media streams,
and the tick that carries every media stream's audio both ways.

Per-call tickers cost a task wake-up per call and frame, and a per-call audio edge five
numpy calls per frame each way. A shared tick runs each call's voice loop for the 20 ms
in turn: the caller audio that arrived since the last tick is decoded in one pass for all
calls (`media.batch_edge`, G.711 at 8 kHz; other wire formats through the call's own
`AudioEdge`), each call takes its caller frames and plays one frame, and the frames going
out are encoded in one pass again. Caller frames keep their arrival times, so the echo
pairing (`media.far_end_clock`) sees the network's timing, not the tick's.

Sends must never wait inside the tick: a peer that stops reading would hold up every call.
Members drop what their peer cannot take (`MediaStreamTransport`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from media.batch_edge import BatchEdge

if TYPE_CHECKING:
    from gateway.call import Call

log = logging.getLogger(__name__)

TICK_S = 0.02
MAX_CATCH_UP_TICKS = 5  # after a stall, run at most this many ticks back to back


class TickPacer:
    """Drift-free 20 ms ticks for a loop that serves many calls."""

    def __init__(self) -> None:
        self.lag_max_ms = 0.0  # worst lateness of a tick (an overload sign)
        self.busy_lag_ms = 0.0  # the same since `restart`
        self._next = 0.0

    def restart(self) -> None:
        """Count ticks from now (the first tick, or the first after an idle spell)."""
        self._next = asyncio.get_running_loop().time()
        self.busy_lag_ms = 0.0

    async def wait(self) -> int:
        """Sleep until the next tick is due; the number of ticks to run: one, or after a
        stall a few to catch up (a longer stall is let go)."""
        loop = asyncio.get_running_loop()
        self._next += TICK_S
        delay = self._next - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lag = loop.time() - self._next
        self.lag_max_ms = max(self.lag_max_ms, lag * 1000)
        self.busy_lag_ms = max(self.busy_lag_ms, lag * 1000)
        if lag <= TICK_S:
            return 1
        n = min(MAX_CATCH_UP_TICKS, 1 + int(lag / TICK_S))
        if lag > MAX_CATCH_UP_TICKS * TICK_S:
            self._next = loop.time()
        else:
            self._next += (n - 1) * TICK_S
        return n


class TickMember(Protocol):
    """A media stream's transport as the tick sees it."""

    call: Call | None
    slot: int | None  # its row in the tick's `BatchEdge` (G.711 at 8 kHz), else None
    codec: int  # `media.batch_edge.codec_index` of its G.711 encoding

    def take_payloads(self) -> tuple[list[bytes], list[float]]:
        """20 ms G.711 payloads received since the last tick, and their arrival times."""
        ...

    def take_frames(self) -> tuple[list[np.ndarray], list[float]]:
        """16 kHz caller frames decoded by its own edge (not batched), and arrival times."""
        ...

    def take_played(self) -> list[np.ndarray]:
        """The agent frames its call played this tick (16 kHz)."""
        ...

    async def send_frame(self, frame: np.ndarray) -> None:
        """Encode with its own edge and send (not batched)."""
        ...

    async def send_payload(self, payload: bytes) -> None:
        """Send one 20 ms payload encoded by the batch; never waits on the peer."""
        ...


class MediaTick:
    """The tick of the app's WebSocket media streams: members join when their call opens."""

    def __init__(self) -> None:
        self.edges = BatchEdge()
        self.pacer = TickPacer()
        self._members: dict[int, TickMember] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._playing_now: set[int] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    def join(self, member: TickMember) -> None:
        self._members[id(member)] = member
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="media-tick")

    def leave(self, member: TickMember) -> None:
        self._members.pop(id(member), None)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        pacer = self.pacer
        while True:
            if not self._members:
                if pacer.busy_lag_ms:
                    log.info("media streams: all calls ended; tick lag max %.1f ms while "
                             "busy", pacer.busy_lag_ms)
                self._wake.clear()
                await self._wake.wait()
                pacer.restart()
            n = await pacer.wait()
            members = list(self._members.values())
            for _ in range(n):
                try:
                    await self.tick(members)
                except Exception:  # one bad tick must not end every call's audio
                    log.exception("media tick failed")

    async def tick(self, members: list[TickMember]) -> None:
        """One 20 ms tick of `members`: caller audio in, one agent frame out each."""
        calls = [m.call for m in members]
        heard: list[tuple[list[np.ndarray], list[float]]] = []
        # round r decodes the r-th payload of every member that has one (a row per slot)
        rounds: list[tuple[list[int], list[int], list[int], list[bytes]]] = []
        for i, m in enumerate(members):
            if m.slot is None:
                heard.append(m.take_frames())
                continue
            payloads, times = m.take_payloads()
            heard.append(([], times))
            for r, payload in enumerate(payloads):
                if r == len(rounds):
                    rounds.append(([], [], [], []))
                idx, slots, codecs, batch = rounds[r]
                idx.append(i)
                slots.append(m.slot)
                codecs.append(m.codec)
                batch.append(payload)
        for idx, slots, codecs, batch in rounds:
            for i, frame in zip(idx, self.edges.decode(slots, codecs, batch), strict=True):
                heard[i][0].append(frame)
        for call, (frames, times) in zip(calls, heard, strict=True):
            if call is None or call.closed:
                continue
            try:
                for frame, t in zip(frames, times, strict=True):
                    await call.caller_frame(frame, t)
                if not call.closed:
                    await call.play_tick()
            except Exception:
                log.exception("call %s: media tick failed", call.call_id)
        # every frame is taken and encoded before the first send (a send may let a
        # `play_now` run, which must find its member's stash empty or in order)
        own: list[tuple[TickMember, np.ndarray]] = []
        batched: list[TickMember] = []
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
            await _guarded(m.send_frame(frame), m)
        for m, payload in zip(batched, payloads, strict=True):
            await _guarded(m.send_payload(payload), m)

    def play_now(self, member: TickMember) -> None:
        """Play `member`'s next frame now, between ticks: the first of a talkspurt."""
        if id(member) not in self._playing_now:
            self._playing_now.add(id(member))
            task = asyncio.create_task(self._play_now(member), name="media-play-now")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _play_now(self, member: TickMember) -> None:
        self._playing_now.discard(id(member))
        call = member.call
        if call is None or call.closed or id(member) not in self._members:
            return
        try:
            await call.play_tick()
        except Exception:
            log.exception("call %s: playing its first frame failed", call.call_id)
        for frame in member.take_played():  # one by one: a slot's frames go in order
            if member.slot is None:
                await _guarded(member.send_frame(frame), member)
            else:
                payload = self.edges.encode([member.slot], [member.codec], [frame])[0]
                await _guarded(member.send_payload(payload), member)


async def _guarded(send: Any, member: TickMember) -> None:
    try:
        await send
    except Exception:
        call = member.call
        log.exception("call %s: sending audio failed", call.call_id if call else "?")
