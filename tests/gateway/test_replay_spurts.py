"""Replay's recorded agent talkspurts (`--agent-channel`) end where the live call heard
them: a far end with marks (Twilio) reports an utterance heard after its last frame played;
a SIP/RTP one has none, and the call counts it heard as its last frame goes out. Either
way the talkspurt is not held in silence up to the next utterance or the call's end."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.testing import _agent_spurts
from media.frames import FRAME_MS, FRAME_SAMPLES


@pytest.mark.parametrize("heard_after_ms", [0.05, FRAME_MS + 3.0], ids=["rtp", "mark"])
def test_a_talkspurt_ends_when_its_utterance_was_heard(heard_after_ms: float) -> None:
    times = [1000.0 + i * FRAME_MS for i in range(5)]  # five agent frames sent
    media = {"agent": times, "events": [
        {"type": "agent.heard", "t_ms": times[-1] + heard_after_ms},
        {"type": "call.end", "t_ms": 9000.0},
    ]}
    right = np.full(FRAME_SAMPLES * 500, 1000, dtype=np.int16)
    (start, pcm), = _agent_spurts(right, media)
    assert start == pytest.approx(1.0)
    assert len(pcm) == 5 * FRAME_SAMPLES  # (not held in silence to the call's end)


def _caller_heard(start_ms: float, end_ms: float, skip: tuple[float, float] = (0.0, 0.0)
                  ) -> list[list[float]]:
    """Caller frames heard by a tick every 20 ms (none inside `skip`: a stalled loop)."""
    rows, t = [], start_ms
    while t < end_ms:
        if not skip[0] < t < skip[1]:
            rows.append([t - 20.0, t + 0.5])
        t += FRAME_MS
    return rows


def test_a_late_ticks_catch_up_is_not_the_end_of_a_talkspurt() -> None:
    # the loop stalled after frame 4: the tick due 20 ms later ran 80 ms late, and with the
    # four after it that were due by then, back to back (`TickPacer`)
    times = [1000.0 + i * FRAME_MS for i in range(5)]
    times += [times[-1] + 100.0 + k * 0.3 for k in range(5)]
    times += [times[4] + 100.0 + k * FRAME_MS for k in range(1, 6)]
    media = {"agent": times, "caller": _caller_heard(900.0, 1400.0, (1081.0, 1180.0)),
             "events": [{"type": "call.end", "t_ms": 9000.0}]}
    right = np.full(FRAME_SAMPLES * 500, 1000, dtype=np.int16)
    (start, pcm), = _agent_spurts(right, media)  # one talkspurt, not held at the gap
    assert start == pytest.approx(1.0)
    assert len(pcm) >= len(times) * FRAME_SAMPLES


def test_a_dry_playout_still_ends_a_talkspurt() -> None:
    # no frame for 80 ms while the ticks went on hearing the caller: the playout was dry
    times = [1000.0 + i * FRAME_MS for i in range(5)]
    times += [times[-1] + 100.0 + k * FRAME_MS for k in range(6)]
    media = {"agent": times, "caller": _caller_heard(900.0, 1400.0),
             "events": [{"type": "agent.heard", "t_ms": times[4] + 23.0},
                        {"type": "call.end", "t_ms": 9000.0}]}
    right = np.full(FRAME_SAMPLES * 500, 1000, dtype=np.int16)
    starts = [s for s, _ in _agent_spurts(right, media)]
    assert starts == [pytest.approx(1.0), pytest.approx(times[5] / 1000)]


def test_a_dry_tick_right_after_a_catch_up_starts_a_talkspurt_on_time() -> None:
    # a catch-up of five ticks, then one tick with nothing to send (the playout dry
    # mid-utterance), then the rest from the tick after: not held behind the first part
    times = [1000.0 + i * FRAME_MS for i in range(5)]
    times += [times[-1] + 100.0 + k * 0.3 for k in range(5)]
    times += [times[4] + 140.0 + k * FRAME_MS for k in range(5)]
    media = {"agent": times, "caller": _caller_heard(900.0, 1400.0, (1081.0, 1180.0)),
             "events": [{"type": "call.end", "t_ms": 9000.0}]}
    right = np.full(FRAME_SAMPLES * 500, 1000, dtype=np.int16)
    (a, first), (b, rest) = _agent_spurts(right, media)
    assert (a, b) == (pytest.approx(1.0), pytest.approx(times[10] / 1000))
    assert len(first) == 10 * FRAME_SAMPLES and len(rest) >= 5 * FRAME_SAMPLES
