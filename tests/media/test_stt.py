"""PocketSphinxSTT on real espeak-ng speech fed in 20 ms frames, as the voice loop feeds it."""

from __future__ import annotations

import numpy as np
import pytest

from media.frames import split_frames
from media.stt import SttStream, Transcript, finish_turn
from media.stt.pocketsphinx import PocketSphinxSTT
from tests.kit.speech import needs_espeak, speech

pytestmark = needs_espeak

PHRASES = ["what time is it", "tell me a story", "goodbye", "operator", "hello"]
GAP = np.zeros(4800, dtype=np.int16)  # 300 ms of digital silence either side


def utterance(text: str, voice: str = "en-us", speed: int = 160) -> np.ndarray:
    return np.concatenate((GAP, speech(text, voice=voice, speed=speed), GAP))


def decode(stream: SttStream, pcm: np.ndarray) -> tuple[Transcript | None, list[Transcript]]:
    partials: list[Transcript] = []
    for frame in split_frames(pcm):
        partials.extend(stream.feed(frame))
    return stream.end_of_turn(), partials


@pytest.fixture(scope="module")
def grammar_stt() -> PocketSphinxSTT:
    return PocketSphinxSTT(phrases=PHRASES)


@pytest.mark.parametrize("voice", ["en-us", "en+f3", "en-gb"])
def test_grammar_phrases_are_exact_for_several_voices(grammar_stt: PocketSphinxSTT,
                                                       voice: str) -> None:
    stream = grammar_stt.new_stream()
    try:
        results = {}
        for phrase in PHRASES:  # one stream, many turns: as in a call
            final, _ = decode(stream, utterance(phrase, voice=voice))
            results[phrase] = final.text if final else None
    finally:
        stream.close()
    assert results == {p: p for p in PHRASES}


@pytest.mark.parametrize("speed", [130, 200])
def test_grammar_phrases_at_other_speaking_rates(grammar_stt: PocketSphinxSTT,
                                                 speed: int) -> None:
    stream = grammar_stt.new_stream()
    finals = [decode(stream, utterance(p, speed=speed))[0] for p in PHRASES]
    stream.close()
    assert [f.text if f else None for f in finals] == PHRASES


def test_quiet_speech_is_still_exact(grammar_stt: PocketSphinxSTT) -> None:
    stream = grammar_stt.new_stream()
    for phrase in PHRASES:
        quiet = (utterance(phrase).astype(np.float32) * 0.1).astype(np.int16)  # -20 dB
        final, _ = decode(stream, quiet)
        assert final == Transcript(phrase, True)
    stream.close()


def test_partials_are_not_final_and_lead_to_the_final(grammar_stt: PocketSphinxSTT) -> None:
    stream = grammar_stt.new_stream()
    final, partials = decode(stream, utterance("tell me a story"))
    stream.close()
    assert final == Transcript("tell me a story", True)
    assert partials and all(not p.is_final for p in partials)
    assert partials[-1].text == "tell me a story"
    assert len({p.text for p in partials}) == len(partials)  # only changes are reported


def test_phrases_come_back_as_written() -> None:
    stt = PocketSphinxSTT(phrases=["What time is it?", "Goodbye!"])
    stream = stt.new_stream()
    final, _ = decode(stream, utterance("what time is it"))
    stream.close()
    assert final == Transcript("What time is it?", True)
    assert stt.phrases == ["What time is it?", "Goodbye!"]


def test_silence_and_empty_turns_give_none(grammar_stt: PocketSphinxSTT) -> None:
    stream = grammar_stt.new_stream()
    assert stream.end_of_turn() is None  # nothing fed
    final, partials = decode(stream, np.zeros(16000, dtype=np.int16))
    assert final is None and partials == []
    # and the stream still works after an empty turn
    assert decode(stream, utterance("goodbye"))[0] == Transcript("goodbye", True)
    stream.close()


def test_open_vocabulary_gives_some_words() -> None:
    stt = PocketSphinxSTT()
    stream = stt.new_stream()
    final, partials = decode(stream, utterance("I would like to book a table for two tonight"))
    stream.close()
    assert final is not None and final.is_final
    assert len(final.text.split()) >= 2
    assert partials


def test_out_of_grammar_rejection() -> None:
    strict = PocketSphinxSTT(phrases=PHRASES, reject_out_of_grammar=True)
    plain = PocketSphinxSTT(phrases=PHRASES)
    others = ["I would like to book a table", "the weather is nice today", "my name is john",
              "please call me back later", "tell me a joke"]
    s_strict, s_plain = strict.new_stream(), plain.new_stream()
    strict_out = [decode(s_strict, utterance(t))[0] for t in others]
    plain_out = [decode(s_plain, utterance(t))[0] for t in others]
    in_grammar = [decode(s_strict, utterance(p))[0] for p in PHRASES]
    s_strict.close()
    s_plain.close()
    # the plain grammar forces some of them onto a phrase; the word loop rejects them all
    assert any(r is not None for r in plain_out)
    assert strict_out == [None] * len(others)
    assert [r.text if r else None for r in in_grammar] == PHRASES


async def test_finish_turn_uses_the_sync_end_of_turn(grammar_stt: PocketSphinxSTT) -> None:
    stream = grammar_stt.new_stream()
    for frame in split_frames(utterance("operator")):
        stream.feed(frame)
    assert await finish_turn(stream) == Transcript("operator", True)
    stream.close()


def test_streams_are_pooled_and_independent(grammar_stt: PocketSphinxSTT) -> None:
    a, b = grammar_stt.new_stream(), grammar_stt.new_stream()
    pa, pb = split_frames(utterance("hello")), split_frames(utterance("goodbye"))
    for i in range(max(len(pa), len(pb))):  # interleaved, as two calls at once
        if i < len(pa):
            a.feed(pa[i])
        if i < len(pb):
            b.feed(pb[i])
    assert a.end_of_turn() == Transcript("hello", True)
    assert b.end_of_turn() == Transcript("goodbye", True)
    a.close()
    a.close()  # idempotent
    c = grammar_stt.new_stream()  # reuses a's decoder, reset
    assert decode(c, utterance("operator"))[0] == Transcript("operator", True)
    b.close()
    c.close()


def test_closed_stream_and_bad_frames_are_clear_errors(grammar_stt: PocketSphinxSTT) -> None:
    stream = grammar_stt.new_stream()
    with pytest.raises(TypeError):
        stream.feed(np.zeros(320, dtype=np.float32))
    with pytest.raises(TypeError):
        stream.feed(b"\x00" * 640)  # type: ignore[arg-type]
    assert stream.feed(np.zeros(0, dtype=np.int16)) == []
    # odd frame sizes are accepted (longer than the 1 s noise table too)
    assert stream.feed(np.zeros(20000, dtype=np.int16)) == []
    stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.feed(np.zeros(320, dtype=np.int16))


def test_bad_configuration_is_refused_at_start_up() -> None:
    with pytest.raises(ValueError, match="zzqxv"):
        PocketSphinxSTT(phrases=["hello zzqxv"])
    with pytest.raises(ValueError):
        PocketSphinxSTT(phrases=[])
    with pytest.raises(ValueError):
        PocketSphinxSTT(phrases=["?!"])
    with pytest.raises(RuntimeError, match="model files missing"):
        PocketSphinxSTT(phrases=PHRASES, model_dir="/nonexistent/model")


def test_decoders_are_held_only_while_a_caller_speaks() -> None:
    """Many calls, one decoder: a stream takes a pooled decoder for an utterance only,
    so starting a call never builds one (that would block the event loop)."""
    stt = PocketSphinxSTT(phrases=["hello", "goodbye"], pool_size=1)
    pool = stt._pool
    assert len(pool) == 1
    streams = [stt.new_stream() for _ in range(20)]  # twenty calls, nobody speaking yet
    assert len(pool) == 1
    for s, word in zip(streams[:3], ["hello", "goodbye", "hello"], strict=True):
        result, _ = decode(s, utterance(word))  # one after the other: one decoder suffices
        assert result == Transcript(word, True)
        assert len(pool) == 1
    for s in streams:
        s.close()
    assert len(pool) == 1
