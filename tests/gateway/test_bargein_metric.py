"""The barge-in latency the metrics and logs report (`gateway.turns`: from the first frame
of the caller's sound that the detector's gate let through, to the pause) agrees with the
replay report's, whose onset is where the caller's voice becomes audible in the recording
(`gateway.testing.speech_onset_ms`), on generated calls talked over at known moments."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.observability import Observability
from gateway.testing import replay_async
from gateway.turns import CallTurns, Turn
from media.frames import SAMPLE_RATE
from tests.kit.speech import speech, trim_silence

FLOOR_DBFS = -60.0
FRAMES_APART = 3  # 60 ms: the two onsets are found differently, frame for frame


class _Kept:
    def __init__(self) -> None:
        self.turns: list[Turn] = []

    def call_started(self, call: CallTurns) -> None:
        pass

    def turn_done(self, call: CallTurns, turn: Turn) -> None:
        self.turns.append(turn)

    def call_ended(self, call: CallTurns, outcome: str) -> None:
        pass

    def agent_error(self, call: CallTurns, severity: str) -> None:
        pass


@pytest.mark.parametrize(("text", "voice", "at_s", "gain_db"), [
    ("wait, I have a question", "en-us", 2.0, 0.0),
    ("hold on, what time is it", "en+f3", 2.7, -10.0),
])
async def test_the_reported_bargein_latency_matches_the_replay_report(
        monkeypatch, text, voice, at_s, gain_db):
    kept = _Kept()
    attach = Observability.attach

    def attach_and_keep(self, call, context) -> None:  # (replay's app attaches its own)
        attach(self, call, context)
        call.turns.sinks = [*call.turns.sinks, kept]

    monkeypatch.setattr(Observability, "attach", attach_and_keep)
    rng = np.random.default_rng(7)
    caller = rng.normal(0.0, 32768 * 10 ** (FLOOR_DBFS / 20), int(6 * SAMPLE_RATE))
    words = trim_silence(speech(text, voice=voice)).astype(np.float64) * 10 ** (gain_db / 20)
    s = int(at_s * SAMPLE_RATE)
    caller[s : s + len(words)] += words[: len(caller) - s]
    result = await replay_async(np.clip(caller, -32768, 32767).astype(np.int16))
    assert result.interrupts, "the caller's words over the greeting must interrupt it"
    reported = [p * 1000 for t in kept.turns for p in t.pauses]
    assert reported, "the turn record has the pause"
    replayed = result.interrupts[0]["latency_ms"]
    assert abs(reported[0] - replayed) <= FRAMES_APART * 20, (reported, replayed)
