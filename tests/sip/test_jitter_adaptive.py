"""The adaptive jitter buffer: one frame of delay to start with, a frame more when packets
come late (no audio lost when the late packet's slot was only concealed), a frame less,
slowly, where the measured jitter allows and only on a quiet frame or at a talkspurt."""

from __future__ import annotations

import pytest

from gateway.sip.jitter import LOST, JitterBuffer
from gateway.sip.rtp import RtpPacket
from gateway.sip.rtp_session import quiet_test

LOUD = b"\x10"  # mu-law: a loud sample
QUIET = b"\xff"  # mu-law: zero
quiet = quiet_test("pcmu")


def pkt(seq: int, fill: bytes = LOUD, ssrc: int = 1, marker: bool = False) -> RtpPacket:
    """Packet `seq`: its payload names it (its first two bytes), the rest is `fill`."""
    return RtpPacket(0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, ssrc,
                     bytes([seq % 256, seq // 256]) + fill * 158, marker=marker)


def run(buf: JitterBuffer, arrivals: dict[int, float], ticks: int,
        fill: dict[int, bytes] | None = None, starts: frozenset[int] = frozenset()
        ) -> list[object]:
    """Tick `ticks` times (tick k at k * 20 ms): file every packet that came by then (in
    arrival order, told its arrival; those in `starts` with the marker of a talkspurt's
    first), then pop. Returns what each tick played: the packet's number, LOST or None."""
    fill = fill or {}
    order = sorted(arrivals, key=lambda s: arrivals[s])
    out: list[object] = []
    i = 0
    for k in range(ticks):
        t = k * 0.02
        while i < len(order) and arrivals[order[i]] <= t:
            s = order[i]
            buf.push(pkt(s, fill.get(s, LOUD), marker=s in starts), arrived=arrivals[s])
            i += 1
        got = buf.pop()
        out.append(got[0] + 256 * got[1] if isinstance(got, bytes) else got)
    return out


def adaptive(**kw: object) -> JitterBuffer:
    kw.setdefault("quiet", lambda p: quiet(p[2:]))  # (past the packet's name)
    return JitterBuffer(1, max_depth=5, **kw)  # type: ignore[arg-type]


def steady(n: int, offset: float = 0.01, first: int = 0) -> dict[int, float]:
    """Packets `first`.. `first + n - 1`, one every 20 ms, `offset` into each tick."""
    return {first + j: (first + j) * 0.02 + offset for j in range(n)}


def test_one_frame_of_delay_to_start_with() -> None:
    buf = adaptive()
    out = run(buf, steady(10), 11)
    assert out[0] is None  # (tick 0 comes before the first packet)
    assert out[1:11] == list(range(10))  # each plays at the first tick after it came
    assert buf.depth == 1 and buf.stats.lost == 0 and buf.stats.grown == 0


def test_a_packet_late_for_its_slot_is_stretched_in_not_lost() -> None:
    arr = steady(20)
    arr[5] += 0.02  # came 10 ms after its tick: the tick concealed its slot
    buf = adaptive()
    out = run(buf, arr, 22)
    assert out[1:6] == [0, 1, 2, 3, 4] and out[6] is LOST  # the concealment ...
    assert out[7:22] == list(range(5, 20))  # ... was a stretch: every packet still plays
    assert buf.depth == 2 and buf.stats.grown == 1 and buf.stats.late == 0


def test_reordered_packets_all_play_in_order() -> None:
    arr = steady(30)
    arr[10], arr[11] = arr[11], arr[10]  # 11 comes first, 10 a frame later
    arr[20], arr[21] = 0.428, 0.425  # a swap before their tick (0.44 then): no harm
    buf = adaptive()
    out = run(buf, arr, 33)
    played = [x for x in out if isinstance(x, int)]
    assert played == list(range(30))
    assert out[:-2].count(LOST) == 1 and buf.depth == 2  # (and the stream's end)


def test_an_underrun_mid_talkspurt_grows_the_buffer() -> None:
    arr = steady(40)
    for s in range(10, 40):  # a stall: from packet 10 on, everything is 15 ms later
        arr[s] += 0.015
    buf = adaptive()
    out = run(buf, arr, 43)
    assert out[11] is LOST  # the buffer ran dry at packet 10's tick ...
    assert [x for x in out if isinstance(x, int)] == list(range(40))  # ... none lost
    assert out[12:42] == list(range(10, 40)) and buf.depth == 2
    assert LOST not in out[12:41]  # the stream plays a frame later from there, smoothly


def test_a_packet_later_than_a_frame_is_dropped_and_the_next_priming_waits_longer() -> None:
    arr = steady(20)
    arr[8] += 0.05  # 2.5 frames late
    buf = adaptive()
    out = run(buf, arr, 22)
    assert 8 not in out and buf.stats.late == 1
    assert buf.depth >= 2  # (grown: its concealment was not taken back)


def test_the_delay_is_bounded() -> None:
    arr = steady(200)
    for s in range(5, 200, 10):  # a packet in ten comes 150 ms late, again and again
        arr[s] += 0.15
    buf = adaptive(shrink_window=1000)
    run(buf, arr, 210)
    assert buf.depth == 5 and buf.max_depth == 5
    assert buf.stats.late > 0  # at the bound, late packets are dropped again


def stalled(n: int, first: int, last: int) -> dict[int, float]:
    """A steady stream whose packets `first`..`last` are held up and come in a burst
    with `last` (an event loop or a network stall)."""
    arr = steady(n)
    for s in range(first, last):
        arr[s] = arr[last]
    return arr


def test_a_stall_grows_it_and_the_backlog_goes_on_quiet_frames() -> None:
    arr = stalled(600, 20, 25)  # 100 ms held up
    speech = {s: LOUD for s in range(600)}
    for s in range(300, 320):  # a pause in the caller's speech much later
        speech[s] = QUIET
    buf = adaptive(shrink_window=50)
    out = run(buf, arr, 604, fill=speech)
    assert buf.stats.grown == 1 and buf.stats.late == 0  # the first after the stall ...
    assert out[21:24] == [LOST, None, None]  # (the stall, heard)
    played = [x for x in out if isinstance(x, int)]
    skipped = set(range(600)) - set(played)
    assert played == sorted(played) and skipped <= set(range(300, 320))  # ... skipping
    assert buf.stats.shrunk == len(skipped) >= 3  # only quiet frames, the backlog's ...
    assert buf.depth == 1  # ... back to a frame of delay
    last = out.index(599)
    assert last * 0.02 - arr[599] <= 0.02


def test_a_stream_that_began_before_the_first_tick_plays_a_frame_late_only_until_quiet(
        ) -> None:
    """A phone sends from the 200 OK on; our tick starts later: the first packets are
    held together when playout starts, a backlog that would add a frame to every one."""
    arr = steady(300, offset=0.002)
    for s in range(3):
        arr[s] = 0.045  # came before the call's first tick
    speech = {s: LOUD for s in range(300)}
    for s in range(100, 110):
        speech[s] = QUIET
    buf = adaptive()
    out = run(buf, arr, 305, fill=speech)
    assert buf.stats.shrunk == 2 and buf.depth == 1
    skipped = set(range(300)) - {x for x in out if isinstance(x, int)}
    assert len(skipped) == 2 and skipped <= set(range(100, 110))  # the backlog's two
    assert out.index(299) * 0.02 - arr[299] < 0.02  # a frame's delay from there


def test_no_frame_of_speech_is_skipped_and_a_new_talkspurt_primes_shorter() -> None:
    arr = stalled(100, 20, 25)
    arr.update({s: s * 0.02 + 1.01 for s in range(100, 200)})  # a talkspurt 1 s later
    buf = adaptive(shrink_window=40)
    out = run(buf, arr, 260, starts=frozenset({100}))
    first_spurt = [x for x in out[:110] if isinstance(x, int)]
    assert first_spurt == list(range(100))  # all loud: nothing skipped mid-word
    assert buf.stats.shrunk == 0 and buf.depth == 1 and buf.stats.grown == 1
    second = out.index(100)
    assert second * 0.02 - arr[100] < 0.02  # the next talkspurt primes at a frame


def test_jitter_that_needs_the_delay_keeps_it() -> None:
    arr = steady(300)
    for s in range(6, 300, 2):  # every other packet 15 ms late
        arr[s] += 0.015
    buf = adaptive(shrink_window=40, quiet=lambda _p: True)
    out = run(buf, arr, 305)
    assert buf.jitter_ms > 10.0  # RFC 3550: about the 15 ms spread
    assert buf.depth == 2 and buf.stats.shrunk == 0 and buf.stats.grown == 1
    assert out[: out.index(299)].count(LOST) == 1  # (the stretch, once)


def test_rfc3550_jitter_of_a_steady_stream_is_zero() -> None:
    buf = adaptive()
    run(buf, steady(50, offset=0.003), 52)
    assert buf.jitter_ms == pytest.approx(0.0, abs=1e-6)


def test_popped_arrival_is_the_played_packets_through_stretch_and_skip() -> None:
    arr = stalled(200, 20, 25)
    arr[10] += 0.015  # a stretch too
    speech = {s: QUIET for s in range(100, 200)}
    buf = adaptive(shrink_window=50)
    order = sorted(arr, key=lambda s: arr[s])
    i, seen = 0, []
    for k in range(205):
        while i < len(order) and arr[order[i]] <= k * 0.02:
            s = order[i]
            buf.push(pkt(s, speech.get(s, LOUD)), arrived=arr[s])
            i += 1
        got = buf.pop()
        if isinstance(got, bytes):
            seen.append((got[0] + 256 * got[1], buf.popped_arrival))
        else:
            assert buf.popped_arrival is None
    assert buf.stats.shrunk >= 1 and buf.stats.grown == 2
    assert all(t == arr[s] for s, t in seen)


def test_a_talkspurt_after_a_pause_keeps_its_first_packet() -> None:
    # silence suppression: the sender stops, and its next packet goes on in sequence
    for buf in (JitterBuffer(2), adaptive()):
        arr = steady(10)
        arr.update({s: s * 0.02 + 0.51 for s in range(10, 20)})  # 0.5 s later
        out = run(buf, arr, 60, starts=frozenset({10}))
        assert [x for x in out if isinstance(x, int)] == list(range(20)), buf.depth
        assert buf.stats.late == 0


def test_fixed_depth_is_unchanged_by_lateness() -> None:
    arr = steady(20)
    arr[5] += 0.05
    buf = JitterBuffer(2)
    out = run(buf, arr, 25)
    assert buf.depth == 2 and not buf.adaptive and buf.stats.grown == 0
    assert 5 not in out and buf.stats.late == 1


def test_quiet_test_of_g711() -> None:
    for enc, zero, loud in (("pcmu", 0xFF, 0x10), ("pcma", 0xD5, 0xA0)):
        q = quiet_test(enc)
        assert q(bytes([zero]) * 160) and q(b"")
        assert not q(bytes([zero]) * 159 + bytes([loud]))


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        JitterBuffer(3, max_depth=2)
    with pytest.raises(ValueError):
        JitterBuffer(1, max_depth=5, shrink_window=0)
