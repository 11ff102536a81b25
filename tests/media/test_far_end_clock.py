"""FarEndClock: frame numbers on the far end's grid, despite jitter."""

from __future__ import annotations

import numpy as np

from media.far_end_clock import FarEndClock


def test_agent_frames_land_on_the_grid_despite_jitter_and_bursts() -> None:
    rng = np.random.default_rng(1)
    clock = FarEndClock()
    sent = 100.0 + 0.02 * np.arange(300)  # caller frame n leaves the far end at sent[n]
    arrived = sent + 0.03 + rng.exponential(0.004, len(sent))
    arrived[100:110] = arrived[110]  # a stall: ten frames come at once
    arrived = np.maximum.accumulate(arrived)
    assert [clock.caller_frame(float(a)) for a in arrived] == list(range(300))
    # our audio, sent from a ticker at a phase 7 ms after the grid's, plays in the next
    # slot and then one slot per frame; three ticks late, the far end runs dry for three
    # frames and plays the rest unbroken after that
    sends = 100.0 + 0.03 + 0.02 * 310 + 0.007 + 0.02 * np.arange(20)
    sends[5:8] = sends[8]
    slots = [clock.agent_frame(float(t)) for t in sends]
    assert slots == [*range(312, 317), *range(320, 335)]


def test_a_new_talkspurt_starts_at_the_grid_again() -> None:
    clock = FarEndClock()
    for n in range(100):
        clock.caller_frame(5.0 + 0.02 * n)
    first = [clock.agent_frame(5.0 + 0.005 + 0.02 * k) for k in range(10)]
    later = [clock.agent_frame(7.0 + 0.005 + 0.02 * k) for k in range(3)]
    assert first == list(range(2, 12))
    assert later == [102, 103, 104]


def test_a_gap_in_the_stream_moves_the_grid_once() -> None:
    clock = FarEndClock()
    for n in range(100):
        clock.caller_frame(5.0 + 0.02 * n)
    # the far end stops sending for 2 s; frame counting is now 100 frames behind
    for n in range(100, 200):
        clock.caller_frame(5.0 + 0.02 * n + 2.0)
    # after half a second the grid follows: audio sent now plays during the next frame
    assert clock.agent_frame(5.0 + 0.02 * 199 + 2.0 + 0.005) == 201
