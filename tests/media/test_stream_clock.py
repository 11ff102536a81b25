"""StreamClock: jitter-free arrival times of a frame stream."""

from __future__ import annotations

import numpy as np

from media.stream_clock import StreamClock


def test_jitter_and_bursts_leave_the_times_on_the_frame_grid() -> None:
    rng = np.random.default_rng(1)
    clock = StreamClock()
    sent = 100.0 + 0.02 * np.arange(500)
    arrived = sent + 0.03 + rng.exponential(0.004, len(sent))
    arrived[100:110] = arrived[110]  # a stall: ten frames come at once
    arrived = np.maximum.accumulate(arrived)
    times = np.array([clock.frame(float(a)) for a in arrived])
    assert np.all(times <= arrived + 1e-12)
    offset = times - sent  # it only falls, and settles on the fastest path seen
    assert np.all(np.diff(offset) <= 1e-12)
    assert np.ptp(offset[200:]) < 1 / 16000  # steady to a sample
    assert 0.03 <= offset[-1] < 0.0301


def test_a_gap_in_the_stream_moves_the_offset_up_once() -> None:
    clock = StreamClock()
    for n in range(100):
        clock.frame(5.0 + 0.02 * n)
    # the far end stops sending for 2 s; frame counting is now 2 s behind its arrivals
    times = [clock.frame(5.0 + 0.02 * n + 2.0) for n in range(100, 200)]
    assert times[0] < 5.0 + 0.02 * 100 + 2.0 - 1.0  # not trusted at once: could be jitter
    assert abs(times[-1] - (5.0 + 0.02 * 199 + 2.0)) < 1e-9  # within half a second: followed
