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
