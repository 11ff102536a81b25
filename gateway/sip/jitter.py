"""A small RTP jitter buffer: reorder by sequence number, play one frame per 20 ms tick.

`push(packet)` files a packet by its extended sequence number (wraparound handled);
late and duplicate packets are dropped. `pop()` is called once per tick and returns
the next payload (bytes), `LOST` when that frame is missing but the stream goes on
(the caller repeats or fades the last frame), or None when there is nothing to play
(not primed yet, or an underrun after the stream paused). Playout starts once
`depth` packets are held, which is the buffer's delay. A new SSRC or a jump
of more than `resync_gap` sequence numbers restarts the buffer; if packets pile up
beyond `max_frames` the oldest are dropped so the delay stays bounded. The first packet
of a talkspurt after a pause (the sender went quiet: its sequence numbers go on from
the slot concealed at the underrun) is taken, not dropped as late.

Adaptive (`max_depth` over `depth_frames`), as production gateways' buffers are: the
delay starts at `depth_frames` and
- grows by a frame (up to `max_depth`) when a packet comes late. A packet whose slot the
  last tick concealed (a hole, or the first tick of an underrun mid-talkspurt) is taken
  as the next frame: the concealed frame becomes a stretch, no audio is lost, and every
  frame after it plays a frame later. After a stall (the stream resumes without the RTP
  marker of a new talkspurt) the next priming waits a frame longer; a packet later than
  these is dropped, and the next priming waits a frame longer too;
- shrinks back, slowly: after `shrink_window` ticks none of which was concealed, the
  delay primed to drops a frame if the RFC 3550 interarrival jitter (`jitter_ms`, from
  the arrival times `push` is told) needs no more (1 frame + twice the jitter); and the
  frames that waited in every one of those ticks beyond what the jitter needs (a
  sender's clock running fast) are given back where nothing is clipped: a quiet frame
  (the `quiet` test: silence, line noise) is skipped, one a tick, or the next talkspurt
  primes afresh. Packets held beyond the delay when playout primes (a phone that sent
  before our first tick, a burst after a stall) go the same way at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from gateway.sip.rtp import RtpPacket

__all__ = ["LOST", "JitterBuffer", "JitterStats", "Lost"]


class Lost:
    """The type of `LOST`: one missing frame to conceal."""

    _instance: Lost | None = None

    def __new__(cls) -> Lost:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "LOST"


LOST = Lost()


@dataclass
class JitterStats:
    received: int = 0
    played: int = 0
    lost: int = 0
    late: int = 0
    duplicate: int = 0
    overflow: int = 0
    resyncs: int = 0
    grown: int = 0  # frames of delay added (adaptive): a late packet, taken or dropped
    shrunk: int = 0  # frames of delay given back (adaptive): a quiet frame skipped


class JitterBuffer:
    def __init__(
        self, depth_frames: int = 2, *, max_frames: int | None = None, resync_gap: int = 100,
        max_depth: int | None = None, shrink_window: int = 150, frame_ms: float = 20.0,
        clock_rate: int = 8000, quiet: Callable[[bytes], bool] | None = None,
    ) -> None:
        if not 1 <= depth_frames <= 50:
            raise ValueError(f"depth_frames must be 1..50, got {depth_frames}")
        if max_depth is not None and not depth_frames <= max_depth <= 50:
            raise ValueError(f"max_depth must be {depth_frames}..50, got {max_depth}")
        if shrink_window < 1:
            raise ValueError("shrink_window must be at least 1")
        self.depth = depth_frames  # the delay (frames) that playout primes to
        self.min_depth = depth_frames
        self.max_depth = max_depth or depth_frames
        self.adaptive = self.max_depth > depth_frames
        self.max_frames = max_frames or max(self.max_depth * 3, self.max_depth + 4)
        if self.max_frames < self.max_depth:
            raise ValueError("max_frames must be at least the largest depth")
        self.resync_gap = resync_gap
        self.shrink_window = shrink_window
        self.frame_ms = frame_ms
        self.clock_rate = clock_rate
        self.quiet = quiet  # may a frame be skipped to shorten the delay? (None: never)
        self.stats = JitterStats()
        self._buf: dict[int, tuple[bytes, float | None]] = {}  # payload, arrival (if told)
        self.popped_arrival: float | None = None  # arrival of the packet `pop` last gave
        self._ssrc: int | None = None
        self._highest: int | None = None
        self._next: int | None = None  # extended seq of the next frame to play
        self._playing = False
        self._last_was_audio = False
        self._concealed: int | None = None  # the slot the last pop concealed
        self._jitter = 0.0  # RFC 3550 interarrival jitter, seconds
        self._transit: tuple[float, int] | None = None  # last (arrival, timestamp)
        self._window = 0  # pops in this shrink window ...
        self._min_spare = math.inf  # ... and the fewest frames left waiting after one
        self._drops = 0  # quiet frames to skip: the delay is that many frames too long

    def __len__(self) -> int:
        return len(self._buf)

    @property
    def jitter_ms(self) -> float:
        """RFC 3550 interarrival jitter of the packets `push` was told the arrival of."""
        return self._jitter * 1000.0

    def _reset(self) -> None:
        self._buf.clear()
        self._highest = None
        self._next = None
        self._playing = False
        self._concealed = None
        self._transit = None
        self._drops = 0
        self._restart_window()
        self.stats.resyncs += 1

    def _extend(self, seq: int) -> int:
        if self._highest is None:
            return seq
        delta = ((seq - self._highest + 0x8000) & 0xFFFF) - 0x8000
        return self._highest + delta

    def push(self, packet: RtpPacket, payload: bytes | None = None,
             arrived: float | None = None) -> bool:
        """File a packet (`payload` overrides its payload, e.g. b"" for a DTMF packet
        that occupies a slot; `arrived`: when it came, which `pop` hands on as
        `popped_arrival`). Returns False if it was dropped as late or duplicate."""
        self.stats.received += 1
        if self._ssrc is not None and packet.ssrc != self._ssrc:
            self._reset()
        self._ssrc = packet.ssrc
        ext = self._extend(packet.sequence)
        ref = self._next if self._next is not None else self._highest
        if ref is not None and abs(ext - ref) > self.resync_gap:
            self._reset()
            ext = packet.sequence
        if arrived is not None and payload is None:  # (an event's packets share a timestamp)
            self._measure(arrived, packet.timestamp)
        if self._next is not None and ext < self._next and not self._take_late(ext, packet.marker):
            return False
        if ext in self._buf:
            self.stats.duplicate += 1
            return False
        self._buf[ext] = (packet.payload if payload is None else payload, arrived)
        if self._highest is None or ext > self._highest:
            self._highest = ext
        while len(self._buf) > self.max_frames:
            oldest = min(self._buf)
            del self._buf[oldest]
            self.stats.overflow += 1
            self._next = oldest + 1
        return True

    def _take_late(self, ext: int, marker: bool) -> bool:
        """A packet for a slot already passed: may it play still (`_next` moved back)?"""
        assert self._next is not None
        if ext == self._concealed:
            if self.adaptive and self.depth < self.max_depth:
                # the last tick concealed its slot: that frame was a stretch, and this
                # packet plays next, a frame later than the stream played so far
                self._next = ext
                self._playing = True
                self._concealed = None
                self._grow()
                return True
        elif not self._playing and ext == self._next - 1:
            # the first packet after a pause: the sender's sequence goes on from the slot
            # concealed when its stream stopped, primed as usual. Not marked as a new
            # talkspurt's (RFC 3551), it is the stream's, late after a stall: grow.
            self._next = ext
            if self.adaptive and not marker and self.depth < self.max_depth:
                self._grow()
            return True
        self.stats.late += 1
        if self.adaptive and self.depth < self.max_depth:
            self._grow()  # (the next priming waits a frame longer)
        return False

    def _grow(self) -> None:
        self.depth += 1
        self.stats.grown += 1
        self._drops = 0
        self._restart_window()

    def _measure(self, arrived: float, timestamp: int) -> None:
        """RFC 3550 (A.8) interarrival jitter: the difference in transit time of two
        packets, smoothed by 1/16."""
        last = self._transit
        self._transit = (arrived, timestamp)
        if last is None:
            return
        dts = ((timestamp - last[1] + 0x80000000) & 0xFFFFFFFF) - 0x80000000
        d = (arrived - last[0]) - dts / self.clock_rate
        self._jitter += (abs(d) - self._jitter) / 16.0

    def _restart_window(self) -> None:
        self._window = 0
        self._min_spare = math.inf

    def _observe(self, spare: float) -> None:
        """One tick of the shrink window: `spare` frames were left waiting after it
        (-1: it was concealed)."""
        if spare < self._min_spare:
            self._min_spare = spare
        self._window += 1
        if self._window < self.shrink_window:
            return
        if self._min_spare >= 0:  # nothing was concealed: the delay was enough
            needed = 1 + int(2.0 * self.jitter_ms / self.frame_ms)  # frames of delay
            smaller = max(self.min_depth, self.depth - 1)
            if needed <= smaller:
                self.depth = smaller  # (what the next talkspurt primes to)
            # frames that always waited beyond what the jitter needs: skip as many quiet
            # frames, one a tick (until the next talkspurt, which primes afresh)
            self._drops = max(0, int(self._min_spare) - needed + 1)
        self._restart_window()

    def pop(self) -> bytes | Lost | None:
        """The frame for this tick: payload bytes, `LOST`, or None (nothing to play).
        `popped_arrival` is then the arrival of the packet given (None: none, or not told)."""
        self.popped_arrival = None
        self._concealed = None
        if not self._playing:
            if len(self._buf) < self.depth:
                self._last_was_audio = False
                return None
            self._playing = True
            # packets held beyond the delay wanted (a stream that began before its first
            # tick, a burst after a stall) are a backlog: give it back on quiet frames
            self._drops = len(self._buf) - self.depth if self.adaptive else 0
            first = min(self._buf)
            self._next = first if self._next is None else max(first, self._next)
        assert self._next is not None
        item = self._buf.pop(self._next, None)
        if item is not None:
            if self._drops and self.quiet is not None and self._next + 1 in self._buf \
                    and self.quiet(item[0]):
                # a quiet frame, and the next is here: skip it, one frame less delay
                self._drops -= 1
                self.stats.shrunk += 1
                self._next += 1
                item = self._buf.pop(self._next)
            payload, self.popped_arrival = item
            self._next += 1
            self.stats.played += 1
            self._last_was_audio = True
            if self.adaptive:
                self._observe(len(self._buf))
            return payload
        if self._buf or self._last_was_audio:
            # a hole in a flowing stream (or the first tick of an underrun): conceal it
            self._concealed = self._next
            self._next += 1
            self.stats.lost += 1
            self._last_was_audio = bool(self._buf)
            if not self._buf:
                self._playing = False
            if self.adaptive:
                self._observe(-1)
            return LOST
        self._playing = False  # underrun: re-prime before playing again
        return None
