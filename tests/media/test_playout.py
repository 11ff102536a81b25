"""PlayoutBuffer: pacing, pieces, flush and heard text, drain, far-end confirmations."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from media.frames import FRAME_SAMPLES, samples_for_ms
from media.playout import PlayoutBuffer

TEXT = "one two three four five six seven eight nine ten"


def ramp(ms: float, start: int = 1) -> np.ndarray:
    """Distinct, non-zero samples so padding and ordering are visible."""
    n = samples_for_ms(ms)
    return ((np.arange(n) + start) % 30000 + 1).astype(np.int16)


def pop_all(buf: PlayoutBuffer, limit: int = 10_000) -> list[np.ndarray]:
    frames = []
    while (f := buf.pop()) is not None and len(frames) < limit:
        frames.append(f)
    return frames


def words_heard_by_rule(text: str, fraction: float) -> int:
    """Independent statement of the documented rule: a word is heard once the played
    fraction reaches its end's fraction of the text's characters."""
    spans = [m.span() for m in re.finditer(r"\S+", text)]
    first, last = spans[0][0], spans[-1][1]
    return sum(1 for _, end in spans if (end - first) / (last - first) <= fraction + 1e-9)


def test_empty_buffer() -> None:
    buf = PlayoutBuffer()
    assert buf.pop() is None
    assert not buf.is_playing and buf.queued_ms == 0
    assert buf.flush() == [] and buf.drain_finished() == []
    assert buf.position() is None


@pytest.mark.parametrize("ms", [20, 100, 1000, 2980])
def test_pacing_n_ms_gives_n_over_20_frames(ms: int) -> None:
    buf = PlayoutBuffer()
    pcm = ramp(ms)
    buf.push("u1", pcm, TEXT)
    assert buf.is_playing and buf.queued_ms == ms
    frames = pop_all(buf)
    assert len(frames) == ms // 20
    assert all(f.dtype == np.int16 and len(f) == FRAME_SAMPLES for f in frames)
    assert np.array_equal(np.concatenate(frames), pcm)
    assert buf.pop() is None and not buf.is_playing and buf.queued_ms == 0


def test_last_partial_frame_is_zero_padded() -> None:
    buf = PlayoutBuffer()
    pcm = ramp(1010)
    buf.push("u1", pcm)
    frames = pop_all(buf)
    assert len(frames) == 51
    tail = len(pcm) - 50 * FRAME_SAMPLES
    assert np.array_equal(frames[-1][:tail], pcm[50 * FRAME_SAMPLES :])
    assert not np.any(frames[-1][tail:])


def test_frames_never_mix_utterances() -> None:
    buf = PlayoutBuffer()
    a = np.full(FRAME_SAMPLES + 10, 7, dtype=np.int16)
    b = np.full(FRAME_SAMPLES, 9, dtype=np.int16)
    buf.push("a", a)
    buf.push("b", b)
    frames = pop_all(buf)
    assert len(frames) == 3
    assert np.all(frames[0] == 7)
    assert np.all(frames[1][:10] == 7) and not np.any(frames[1][10:])
    assert np.all(frames[2] == 9)


def test_multi_piece_utterance_plays_contiguously() -> None:
    buf = PlayoutBuffer()
    pieces = [ramp(13, 1), ramp(37, 500), ramp(6.5, 2000), ramp(100, 9000)]
    for i, p in enumerate(pieces):
        buf.push("u", p, final=i == len(pieces) - 1)
    out = np.concatenate(pop_all(buf))
    whole = np.concatenate(pieces)
    assert np.array_equal(out[: len(whole)], whole) and not np.any(out[len(whole) :])
    assert len(out) % FRAME_SAMPLES == 0 and len(out) - len(whole) < FRAME_SAMPLES


def test_unfinished_utterance_waits_for_more_audio_instead_of_padding() -> None:
    buf = PlayoutBuffer()
    buf.push("u", ramp(30), text="hello", final=False)
    assert buf.pop() is not None  # one full frame
    assert buf.pop() is None  # 10 ms left, more is coming: wait
    assert buf.is_playing and buf.queued_ms == 10
    buf.push("u", ramp(10, 480), final=False)
    second = buf.pop()
    assert second is not None and np.array_equal(second[:160], ramp(30)[320:])
    assert buf.pop() is None and buf.drain_finished() == []
    buf.push("u", np.zeros(0, dtype=np.int16), final=True)  # end of stream, no more audio
    assert buf.drain_finished() == ["u"] and not buf.is_playing


def test_later_utterance_waits_behind_unfinished_one() -> None:
    buf = PlayoutBuffer()
    buf.push("a", ramp(20), final=False)
    buf.push("b", ramp(40))
    assert buf.pop() is not None
    assert buf.pop() is None  # "a" may still grow; "b" must not jump ahead
    buf.push("a", np.zeros(0, dtype=np.int16), final=True)
    assert len(pop_all(buf)) == 2
    assert buf.drain_finished() == ["a", "b"]


@pytest.mark.parametrize("frames_played", [1, 10, 25, 37, 49])
def test_flush_mid_utterance_reports_heard_prefix(frames_played: int) -> None:
    buf = PlayoutBuffer()
    buf.push("u", ramp(1000), TEXT)
    buf.push("next", ramp(500), "never heard")
    for _ in range(frames_played):
        assert buf.pop() is not None
    heard = buf.flush()
    assert [h.utterance_id for h in heard] == ["u"]  # "next" never started
    h = heard[0]
    fraction = frames_played * 20 / 1000
    assert h.played_ms == frames_played * 20 and h.total_ms == 1000 and not h.complete
    assert h.full_text == TEXT and TEXT.startswith(h.text)
    assert len(h.text.split()) == words_heard_by_rule(TEXT, fraction)
    # Consistent with the played fraction: at most that share of the characters.
    assert len(h.text) <= fraction * len(TEXT) + 1e-9
    # Everything is gone at once.
    assert buf.pop() is None and not buf.is_playing and buf.queued_ms == 0
    assert buf.heard_text("u") == h.text and buf.played_ms("u") == h.played_ms


@given(st.lists(st.text(alphabet="abc xyz.,", min_size=1, max_size=30), min_size=1, max_size=5),
       st.lists(st.integers(1, 2000), min_size=5, max_size=5), st.integers(0, 200))
def test_heard_text_is_always_a_growing_prefix(texts: list[str], lengths: list[int],
                                                pops: int) -> None:
    buf = PlayoutBuffer()
    for i, text in enumerate(texts):
        pcm = np.ones(lengths[i], dtype=np.int16)
        buf.push("u", pcm, text, final=i == len(texts) - 1)
    full = buf.heard("u").full_text
    previous = ""
    for _ in range(pops):
        if buf.pop() is None:
            break
        now = buf.heard_text("u")
        assert full.startswith(now) and now.startswith(previous)
        previous = now
    if not buf.is_playing:
        assert buf.heard_text("u") == full.rstrip()


def test_text_per_piece_maps_to_each_pieces_audio() -> None:
    buf = PlayoutBuffer()
    buf.push("u", ramp(500), "Hello there.", final=False)
    buf.push("u", ramp(500), "How are you today?", final=True)
    for _ in range(25):
        buf.pop()
    assert buf.heard_text("u") == "Hello there."
    for _ in range(13):  # 760 ms: 52% into the second piece's audio
        buf.pop()
    n = words_heard_by_rule("How are you today?", 260 / 500)
    assert buf.heard_text("u") == " ".join(["Hello", "there."] + "How are you today?".split()[:n])
    assert buf.heard("u").full_text == "Hello there. How are you today?"


def test_text_given_once_spans_all_pieces() -> None:
    buf = PlayoutBuffer()
    buf.push("u", ramp(200), TEXT, final=False)
    buf.push("u", ramp(300), final=False)
    buf.push("u", ramp(500), final=True)
    for _ in range(25):
        buf.pop()
    assert len(buf.heard_text("u").split()) == words_heard_by_rule(TEXT, 0.5)


def test_text_given_with_last_empty_piece_covers_earlier_audio() -> None:
    buf = PlayoutBuffer()
    buf.push("u", ramp(500), final=False)
    buf.push("u", ramp(500), final=False)
    buf.push("u", np.zeros(0, dtype=np.int16), TEXT, final=True)
    for _ in range(25):
        buf.pop()
    assert len(buf.heard_text("u").split()) == words_heard_by_rule(TEXT, 0.5)


def test_drained_notifications_in_order() -> None:
    buf = PlayoutBuffer()
    buf.push("a", ramp(40), "first")
    buf.push("b", ramp(60), "second")
    buf.pop()
    assert buf.drain_finished() == []
    buf.pop()
    assert buf.drain_finished() == ["a"]
    assert buf.drain_finished() == []
    assert buf.is_playing
    pop_all(buf)
    assert buf.drain_finished() == ["b"] and not buf.is_playing
    assert buf.heard_text("a") == "first" and buf.heard("b").complete


def test_flush_keeps_already_finished_and_reports_only_started() -> None:
    buf = PlayoutBuffer()
    buf.push("a", ramp(20), "done")
    buf.push("b", ramp(100), TEXT)
    buf.push("c", ramp(100), "queued")
    buf.pop()
    buf.pop()
    heard = buf.flush()
    assert [h.utterance_id for h in heard] == ["b"]
    assert buf.drain_finished() == ["a"]


def test_late_audio_for_flushed_utterance_is_dropped() -> None:
    buf = PlayoutBuffer()
    buf.push("u", ramp(100), TEXT, final=False)
    buf.pop()
    buf.flush()
    buf.push("u", ramp(100), "more", final=True)
    assert buf.pop() is None and not buf.is_playing and buf.queued_ms == 0


def test_far_end_confirmations_decide_what_was_heard() -> None:
    buf = PlayoutBuffer(far_end_confirms=True)
    buf.push("u", ramp(1000), TEXT)
    marks = []
    for _ in range(50):
        assert buf.pop() is not None
        marks.append(buf.position())
    assert marks[9] == ("u", 200.0) and marks[-1] == ("u", 1000.0)
    # Everything was sent, nothing confirmed: still playing at the far end.
    assert buf.is_playing and buf.queued_ms == 0 and buf.drain_finished() == []
    assert buf.played_ms("u") == 0 and buf.heard_text("u") == ""
    buf.confirm(*marks[24])
    assert buf.played_ms("u") == 500
    buf.confirm("u", 200)  # an older mark never moves the position back
    assert buf.played_ms("u") == 500
    heard = buf.flush()
    assert len(heard) == 1 and heard[0].played_ms == 500
    assert len(heard[0].text.split()) == words_heard_by_rule(TEXT, 0.5)
    buf.confirm("u", 1000)  # a mark arriving after the clear is ignored
    assert buf.played_ms("u") == 500


def test_far_end_confirmation_finishes_an_utterance() -> None:
    buf = PlayoutBuffer(far_end_confirms=True)
    buf.push("a", ramp(40), "hi")
    buf.push("b", ramp(40), "there")
    frames = pop_all(buf)
    assert len(frames) == 4  # "b" is sent while "a" awaits its confirmation
    buf.confirm("a", 10_000)  # capped at what was sent
    assert buf.played_ms("a") == 40
    assert buf.drain_finished() == ["a"] and buf.is_playing
    buf.confirm("b", 40)
    assert buf.drain_finished() == ["b"] and not buf.is_playing
    buf.confirm("nobody", 20)  # unknown: ignored


def test_a_mark_in_a_later_utterance_confirms_the_ones_before_it() -> None:
    # Two utterances back to back, marks every 5 frames as a provider stream sends them:
    # no mark falls on the first one's end (110 ms), yet the far end plays in order, so
    # the second one's first mark confirms the first one in full.
    buf = PlayoutBuffer(far_end_confirms=True)
    buf.push("a", ramp(110), "first")
    buf.push("b", ramp(200), "second")
    marks = []
    for n in range(1, 17):
        assert buf.pop() is not None
        if n % 5 == 0:
            marks.append(buf.position())
    assert marks == [("a", 100.0), ("b", 80.0), ("b", 180.0)]
    assert buf.queued_ms == 0 and buf.position() == ("b", 200.0)
    buf.confirm(*marks[0])
    assert buf.played_ms("a") == 100 and buf.drain_finished() == []
    buf.confirm(*marks[1])
    assert buf.played_ms("a") == 110 and buf.drain_finished() == ["a"]
    assert buf.heard_text("a") == "first" and buf.played_ms("b") == 80
    buf.confirm(*buf.position())  # the last frame's mark (or the loop's lost-mark timeout)
    assert buf.drain_finished() == ["b"] and not buf.is_playing
    buf.confirm(*marks[2])  # late, after it retired: ignored
    assert buf.played_ms("b") == 200 and buf.drain_finished() == []


def test_a_confirmation_never_reaches_past_the_utterance_it_names() -> None:
    buf = PlayoutBuffer(far_end_confirms=True)
    buf.push("a", ramp(40), "one")
    buf.push("b", ramp(40), "two")
    buf.push("c", ramp(40), "three")
    pop_all(buf)
    buf.confirm("b", 20)
    assert buf.drain_finished() == ["a"]
    assert buf.played_ms("b") == 20 and buf.played_ms("c") == 0 and buf.is_playing


def test_at_utterance_end_labels_each_utterances_last_frame() -> None:
    buf = PlayoutBuffer(far_end_confirms=True)
    assert not buf.at_utterance_end
    buf.push("a", ramp(50), "one")
    buf.push("b", ramp(40), "two")
    ends = []
    while buf.pop() is not None:
        ends.append(buf.at_utterance_end)
    assert ends == [False, False, True, False, True]
    buf.push("c", ramp(40), "streamed", final=False)  # (so far: more may follow)
    buf.pop()
    assert not buf.at_utterance_end
    buf.pop()
    assert buf.at_utterance_end


def test_a_paused_buffer_keeps_unconfirmed_audio_unplayed() -> None:
    buf = PlayoutBuffer(far_end_confirms=True)
    buf.push("a", ramp(40), "one")
    buf.push("b", ramp(100), "two")
    for _ in range(3):
        buf.pop()
    buf.pause()
    assert buf.pop() is None and buf.is_playing
    buf.confirm("b", 20)  # the far end plays what it had: marks still count while paused
    assert buf.drain_finished() == ["a"] and buf.played_ms("b") == 20
    assert buf.is_playing and buf.queued_ms == 80
    buf.resume()
    pop_all(buf)
    buf.confirm(*buf.position())
    assert buf.drain_finished() == ["b"] and not buf.is_playing


def test_bad_input() -> None:
    buf = PlayoutBuffer()
    with pytest.raises(TypeError, match="int16"):
        buf.push("u", np.zeros(320, dtype=np.float32))
    with pytest.raises(TypeError, match="int16"):
        buf.push("u", [0] * 320)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="utterance_id"):
        buf.push("", ramp(20))
    with pytest.raises(TypeError, match="text"):
        buf.push("u", ramp(20), text=b"bytes")  # type: ignore[arg-type]
    buf.push("u", ramp(20))
    with pytest.raises(ValueError, match="final"):
        buf.push("u", ramp(20))
    with pytest.raises(KeyError, match="unknown utterance"):
        buf.played_ms("missing")
    assert buf.is_playing and buf.queued_ms == 20


def test_pause_holds_the_position_and_resume_goes_on_from_it():
    buf = PlayoutBuffer()
    audio = ramp(100)
    buf.push("u", audio, text=TEXT)
    first = buf.pop()
    buf.pause()
    assert buf.paused and buf.pop() is None and buf.pop() is None
    assert buf.is_playing and buf.queued_ms == 80 and buf.played_ms("u") == 20
    buf.resume()
    rest = [buf.pop() for _ in range(4)]
    assert all(f is not None for f in rest) and buf.pop() is None
    assert np.array_equal(np.concatenate([first, *rest]), audio)  # nothing lost or repeated
    assert buf.drain_finished() == ["u"] and buf.heard_text("u") == TEXT


def test_flush_ends_a_pause():
    buf = PlayoutBuffer()
    buf.push("u", ramp(100), text=TEXT)
    buf.pop()
    buf.pause()
    heard = buf.flush()
    assert heard[0].played_ms == 20 and not buf.paused
    buf.push("v", ramp(20))
    assert buf.pop() is not None


@pytest.mark.parametrize("samples", [44080, 44085, 44088, 44090])
def test_a_mark_at_the_end_labelled_in_whole_ms_confirms_the_utterance(samples):
    """Marks carry the position in whole ms (`uid@2755`): an utterance of 2755.3 ms is
    confirmed to its end by it (it stayed unconfirmed, and the agent talking, until the
    1.5 s stall timeout: the caller's next turn was taken for a barge-in)."""
    buf = PlayoutBuffer(far_end_confirms=True)
    buf.push("u", np.ones(samples, dtype=np.int16), text=TEXT)
    while buf.pop() is not None:
        pass
    uid, ms = buf.position()
    buf.confirm(uid, float(f"{ms:.0f}"))
    assert buf.drain_finished() == ["u"] and not buf.is_playing


def test_a_mark_confirms_no_further_than_was_sent():
    buf = PlayoutBuffer(far_end_confirms=True)
    buf.push("u", ramp(100), text=TEXT)
    buf.pop()
    buf.confirm("u", 20.0)
    assert buf.played_ms("u") == 20 and buf.is_playing
