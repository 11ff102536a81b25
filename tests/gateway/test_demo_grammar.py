"""The offline demo does not pretend (issue 25, item 5): its recogniser rejects speech that
is none of its phrases, and the demo answers it "Sorry, I didn't catch that", while its
phrases are still recognised. Real espeak-ng speech, the real recogniser and voice loop."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.app import AtomsApp
from gateway.demo import GARBAGE, NOT_CAUGHT, PHRASES, UNRECOGNISED
from gateway.replay_kit import replay_turns
from media.frames import split_frames
from media.stt.pocketsphinx import PocketSphinxSTT
from tests.kit.speech import needs_espeak, speech

pytestmark = needs_espeak

GAP = np.zeros(4800, dtype=np.int16)
# Out-of-grammar speech of several kinds: backchannels, near misses of a phrase, requests
# the demo does not know. None is in benchmarks/demo_grammar.py's set, which chose the
# garbage weight, so the test does not rest on the clips the weight was tuned on.
OTHERS = ["uh huh", "mm hmm", "tell me a secret", "what year is it",
          "I would like to pay my bill", "can I talk to sales", "please send me a brochure",
          "my order has not arrived yet"]
VOICES = [("en-us", 160), ("en+m3", 140)]


def decode_all(stt: PocketSphinxSTT, texts: list[str], voice: str, speed: int
               ) -> list[str | None]:
    stream = stt.new_stream()  # one caller, many turns, as in a call
    out = []
    for text in texts:
        for frame in split_frames(np.concatenate((GAP, speech(text, voice, speed), GAP))):
            stream.feed(frame)
        final = stream.end_of_turn()
        out.append(final.text if final is not None else None)
    stream.close()
    return out


@pytest.fixture(scope="module")
def demo_stt() -> PocketSphinxSTT:
    app = AtomsApp()  # no setup handler: the demo, with its recogniser settings
    app.settings.stt_pool = 1
    app.load_engines()
    assert isinstance(app.stt, PocketSphinxSTT)
    assert app.stt.garbage == GARBAGE and app.stt.unrecognised == UNRECOGNISED
    assert "other speech rejected" in app.engines["stt"]
    return app.stt


def test_the_demo_recogniser_keeps_its_phrases_and_rejects_other_speech(
        demo_stt: PocketSphinxSTT) -> None:
    plain = PocketSphinxSTT(phrases=PHRASES, unrecognised=UNRECOGNISED, pool_size=1)
    exact = wrong = rejected = forced = 0
    for voice, speed in VOICES:
        got = decode_all(demo_stt, PHRASES, voice, speed)
        exact += sum(g == p for g, p in zip(got, PHRASES, strict=True))
        wrong += sum(g not in (p, UNRECOGNISED, None) for g, p in zip(got, PHRASES, strict=True))
        rejected += sum(g in (UNRECOGNISED, None) for g in decode_all(demo_stt, OTHERS, voice,
                                                                       speed))
        forced += sum(g in PHRASES for g in decode_all(plain, OTHERS, voice, speed))
    n = len(VOICES) * len(OTHERS)
    # measured (benchmarks/README.md): about 9 in 10 phrases exact, 8 in 10 others rejected
    assert wrong == 0
    assert exact >= len(VOICES) * len(PHRASES) - 3
    assert rejected >= n * 2 // 3
    assert forced >= n // 2  # without the garbage path most of them became a phrase


def test_a_phrase_is_answered_and_other_speech_gets_didnt_catch_that() -> None:
    # the demo greets for about 11 s; the caller waits, asks the time, then says something
    # the demo does not know
    call = replay_turns([(12.0, "what time is it"), (16.0, "I would like to pay my bill")],
                        duration=27.0)
    assert call.caller_said == ["what time is it", UNRECOGNISED]
    replies = call.agent_said[1:]
    assert replies[0].startswith("It is ")
    assert replies[1].startswith(NOT_CAUGHT)
    call.assert_heard(NOT_CAUGHT)
    call.assert_not_interrupted()


def test_garbage_settings_name_what_is_wrong() -> None:
    from gateway.settings import SettingError, Settings

    assert Settings.from_env({"ATOMS_STT_GARBAGE": "words",
                              "ATOMS_STT_UNRECOGNISED": "(what?)"}).stt_unrecognised == "(what?)"
    with pytest.raises(SettingError, match="ATOMS_STT_GARBAGE='noise': use phones or words"):
        Settings.from_env({"ATOMS_STT_GARBAGE": "noise"})
    with pytest.raises(ValueError, match="garbage='noise'"):
        PocketSphinxSTT(phrases=PHRASES, garbage="noise", pool_size=1)
