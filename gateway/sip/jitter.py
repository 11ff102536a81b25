"""A small RTP jitter buffer: reorder by sequence number, play one frame per 20 ms tick.

`push(packet)` files a packet by its extended sequence number (wraparound handled);
late and duplicate packets are dropped. `pop()` is called once per tick and returns
the next payload (bytes), `LOST` when that frame is missing but the stream goes on
(the caller repeats or fades the last frame), or None when there is nothing to play
(not primed yet, or an underrun after the stream paused). Playout starts once
`depth_frames` packets are held, which is the buffer's delay. A new SSRC or a jump
of more than `resync_gap` sequence numbers restarts the buffer; if packets pile up
beyond `max_frames` the oldest are dropped so the delay stays bounded.
"""

from __future__ import annotations

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


class JitterBuffer:
    def __init__(
        self, depth_frames: int = 2, *, max_frames: int | None = None, resync_gap: int = 100
    ) -> None:
        if not 1 <= depth_frames <= 50:
            raise ValueError(f"depth_frames must be 1..50, got {depth_frames}")
        self.depth = depth_frames
        self.max_frames = max_frames or max(depth_frames * 3, depth_frames + 4)
        if self.max_frames < depth_frames:
            raise ValueError("max_frames must be at least depth_frames")
        self.resync_gap = resync_gap
        self.stats = JitterStats()
        self._buf: dict[int, tuple[bytes, float | None]] = {}  # payload, arrival (if told)
        self.popped_arrival: float | None = None  # arrival of the packet `pop` last gave
        self._ssrc: int | None = None
        self._highest: int | None = None
        self._next: int | None = None  # extended seq of the next frame to play
        self._playing = False
        self._last_was_audio = False

    def __len__(self) -> int:
        return len(self._buf)

    def _reset(self) -> None:
        self._buf.clear()
        self._highest = None
        self._next = None
        self._playing = False
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
        if self._next is not None and ext < self._next:
            self.stats.late += 1
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

    def pop(self) -> bytes | Lost | None:
        """The frame for this tick: payload bytes, `LOST`, or None (nothing to play).
        `popped_arrival` is then the arrival of the packet given (None: none, or not told)."""
        self.popped_arrival = None
        if not self._playing:
            if len(self._buf) < self.depth:
                self._last_was_audio = False
                return None
            self._playing = True
            first = min(self._buf)
            self._next = first if self._next is None else max(first, self._next)
        assert self._next is not None
        item = self._buf.pop(self._next, None)
        if item is not None:
            payload, self.popped_arrival = item
            self._next += 1
            self.stats.played += 1
            self._last_was_audio = True
            return payload
        if self._buf or self._last_was_audio:
            # a hole in a flowing stream (or the first tick of an underrun): conceal it
            self._next += 1
            self.stats.lost += 1
            self._last_was_audio = bool(self._buf)
            if not self._buf:
                self._playing = False
            return LOST
        self._playing = False  # underrun: re-prime before playing again
        return None
