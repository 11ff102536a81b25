"""Barge-in pauses first and interrupts only when it is real (virtual clock, the demo
agent, espeak-ng and pocketsphinx): a backchannel or a short sound over the agent pauses
its audio and resumes it where it paused, the session none the wiser; speech that goes on
is confirmed and interrupts (event, clear, heard text cut); words a recogniser reports
confirm at once unless they are backchannel words."""

from __future__ import annotations

import numpy as np
import pytest

from gateway.call import Call, CallSettings
from gateway.testing import replay_async
from media.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from media.stt import Transcript
from tests.kit.speech import speech, trim_silence

TOTAL_MS = 16000  # the greeting plays to its end inside this


def at(ms: int, pcm: np.ndarray, total_ms: int = TOTAL_MS) -> np.ndarray:
    out = np.zeros(total_ms * SAMPLE_RATE // 1000, dtype=np.int16)
    start = ms * SAMPLE_RATE // 1000
    out[start : start + len(pcm)] = pcm[: len(out) - start]
    return out


def types(r) -> list[str]:
    return [e["type"] for e in r.events]


def first(r, kind: str) -> dict:
    return next(e for e in r.events if e["type"] == kind)


def agent_frames(r) -> np.ndarray:
    return r.agent.reshape(-1, FRAME_SAMPLES)[r.played]


def heard(r) -> list[str]:
    return [e["text"] for e in r.events if e["type"] == "agent.heard"]


@pytest.fixture(scope="module")
def greeting():
    import asyncio

    r = asyncio.run(replay_async(np.zeros(TOTAL_MS * SAMPLE_RATE // 1000, np.int16)))
    assert heard(r) and heard(r)[0]  # played to its end: the whole greeting was heard
    return r


@pytest.fixture
def clears(monkeypatch) -> list[int]:
    """Counts the transport's clear_audio calls in replays."""
    count: list[int] = []
    start = Call.start

    async def counting_start(self: Call) -> None:
        clear = self.transport.clear_audio

        async def clear_audio() -> None:
            count.append(1)
            await clear()

        self.transport.clear_audio = clear_audio  # type: ignore[method-assign]
        await start(self)

    monkeypatch.setattr(Call, "start", counting_start)
    return count


@pytest.mark.parametrize("word", ["uh huh", "yeah", "okay", "mm hmm", "right"])
async def test_a_backchannel_pauses_the_agent_and_resumes_it_where_it_paused(
        greeting, clears, word):
    words = trim_silence(speech(word, voice="en-us"))
    r = await replay_async(at(2000, words))
    t = types(r)
    assert t.count("bargein.pause") == 1 and t.count("bargein.resume") == 1
    # the agent's audio held still while paused ...
    paused = int(first(r, "bargein.pause")["t_ms"] // FRAME_MS)
    resumed = int(first(r, "bargein.resume")["t_ms"] // FRAME_MS)
    assert resumed > paused + 5 and not r.played[paused + 1 : resumed + 1].any()
    assert r.played[resumed + 2 :].any()
    # ... and went on from there: every frame of the greeting, once, in order (synthesis
    # differs by a sample value or two between runs; a frame out of place by thousands)
    played, whole = agent_frames(r).astype(np.int32), agent_frames(greeting).astype(np.int32)
    assert played.shape == whole.shape and np.abs(played - whole).max() <= 8
    # resumed soon after the sound ended
    assert first(r, "bargein.resume")["t_ms"] - (2000 + len(words) * 1000 / SAMPLE_RATE) < 300
    # the session never heard of it: no interrupt, no turn, the whole greeting was heard
    assert r.interrupts == [] and clears == []
    for kind in ("interrupt", "system.control.interrupt", "system.user.started_speaking",
                 "system.user.stopped_speaking", "system.llm.request"):
        assert kind not in t
    assert heard(r) == heard(greeting)


async def test_a_real_interruption_pauses_then_interrupts(greeting, clears):
    words = trim_silence(speech("no no, that's wrong", voice="en-us"))
    r = await replay_async(at(2000, words))
    t = types(r)
    assert "bargein.resume" not in t
    assert (t.index("bargein.pause") < t.index("interrupt")
            < t.index("system.control.interrupt") < t.index("agent.heard"))
    assert clears == [1]
    # the barge-in's time (its latency) is the pause, not the confirmation
    pause_ms = first(r, "bargein.pause")["t_ms"]
    assert [i["at_ms"] for i in r.interrupts] == [pause_ms] < [first(r, "interrupt")["t_ms"]]
    tick = int(pause_ms // FRAME_MS)
    reply = next((i for i in range(tick + 2, len(r.played)) if r.played[i]), len(r.played))
    assert not r.played[tick + 1 : reply].any()
    # the heard text is cut where the audio paused
    cut = heard(r)[0]
    assert 0 < len(cut) < len(heard(greeting)[0]) and heard(greeting)[0].startswith(cut)
    # and the caller's turn goes on as a turn
    assert t.index("system.control.interrupt") < t.index("system.user.started_speaking")


async def test_a_pause_soon_after_a_resume_goes_on_counting(greeting, clears):
    """"wait, stop" said slowly: its comma is as long as the quiet that resumes the agent,
    so "wait" resumed and "stop" alone was too short to confirm. The second pause, soon
    after the resume, counts from the first: the interruption is confirmed."""
    words = trim_silence(speech("wait, stop", voice="en+f3", speed=140))
    r = await replay_async(at(2000, words))
    t = types(r)
    assert t.count("bargein.pause") == 2 and t.count("bargein.resume") == 1
    assert t.index("bargein.resume") < t.index("interrupt") < t.index("system.control.interrupt")
    assert clears == [1]


async def test_a_short_sound_that_pauses_resumes():
    """A cough with a voiced grunt in it (enough for the detector) is over in 200 ms."""
    rng = np.random.default_rng(3)
    n = SAMPLE_RATE // 10
    burst = rng.normal(0, 9000, n) * np.exp(-np.linspace(0, 6, n))
    grunt = trim_silence(speech("uh", voice="en+m3"))[: SAMPLE_RATE * 15 // 100]
    cough = np.clip(np.concatenate([burst, grunt]), -32768, 32767).astype(np.int16)
    r = await replay_async(at(2000, cough))
    t = types(r)
    assert r.interrupts == [] and "system.control.interrupt" not in t
    assert t.count("bargein.pause") == t.count("bargein.resume")


async def test_no_pause_setting_interrupts_at_the_fire():
    words = trim_silence(speech("uh huh", voice="en-us"))
    r = await replay_async(at(2000, words), settings=CallSettings(bargein_confirm_ms=0))
    t = types(r)
    assert len(r.interrupts) == 1 and "bargein.resume" not in t
    assert first(r, "bargein.pause")["t_ms"] == first(r, "interrupt")["t_ms"]


async def test_no_pause_setting_waits_for_the_fire_not_an_eager_pause():
    """With no pause to confirm, only the detector's fire interrupts: the eager pause, which
    comes 40 ms sooner here, would interrupt on any loud voice-like sound."""
    words = trim_silence(speech("no no, that's wrong", voice="en-us"))
    eager = first(await replay_async(at(2000, words)), "bargein.pause")["t_ms"]
    r = await replay_async(at(2000, words), settings=CallSettings(bargein_confirm_ms=0))
    assert len(r.interrupts) == 1
    assert first(r, "interrupt")["t_ms"] > eager


class _WordsStt:
    """A recogniser with trustworthy interim words: it reports `text` 100 ms into each
    utterance (and as the final), and counts the utterances it was asked to end."""

    interim_words = True

    def __init__(self, text: str) -> None:
        self.text = text
        self.frames = 0
        self.ended = 0

    def new_stream(self) -> _WordsStt:
        return self

    def feed(self, frame: np.ndarray) -> list[Transcript]:
        self.frames += 1
        return [Transcript(self.text, False)] if self.frames == 5 else []

    def end_of_turn(self) -> Transcript | None:
        self.frames = 0
        self.ended += 1
        return Transcript(self.text, True)

    def close(self) -> None:
        return None


async def test_words_outside_the_backchannel_list_confirm_a_short_stop(clears):
    """A one-word "stop" is too short to confirm by its length; its word confirms it."""
    words = trim_silence(speech("stop", voice="en-us"))
    stt = _WordsStt("stop")
    r = await replay_async(at(2000, words), stt=stt)
    t = types(r)
    assert "bargein.resume" not in t and clears == [1]
    assert first(r, "bargein.confirm")["reason"] == "words"
    assert t.index("bargein.pause") < t.index("system.control.interrupt")
    user = [e["content"] for e in r.events if e["type"] == "agent.transcript.update"
            and e.get("role") == "user"]
    assert user == ["stop"]


async def test_backchannel_words_do_not_confirm_and_the_turn_is_forgotten(greeting):
    words = trim_silence(speech("yeah", voice="en-us"))
    stt = _WordsStt("Yeah, uh-huh.")
    r = await replay_async(at(2000, words), stt=stt)
    t = types(r)
    assert t.count("bargein.resume") == 1 and r.interrupts == []
    assert "system.user.started_speaking" not in t and "system.llm.request" not in t
    assert stt.ended == 1  # the recogniser's utterance was ended, its text dropped
    assert heard(r) == heard(greeting)
