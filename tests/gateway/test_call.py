"""The voice loop under the virtual clock, with the demo agent, espeak-ng and pocketsphinx."""

import numpy as np
import pytest

from gateway.demo import GREETING
from gateway.testing import replay_async
from media.frames import FRAME_MS, SAMPLE_RATE
from tests.kit.audio import at
from tests.kit.speech import speech, trim_silence


def types(result) -> list[str]:
    return [e["type"] for e in result.events]


@pytest.fixture(scope="module")
def greeting_only():
    """The agent's own greeting as played, with a silent caller (reference for echo)."""
    import asyncio

    return asyncio.run(replay_async(np.zeros(8 * SAMPLE_RATE, dtype=np.int16)))


def test_greeting_plays_and_nothing_interrupts_silence(greeting_only):
    r = greeting_only
    assert types(r)[:2] == ["system.init", "system.user.joined"]
    assert r.interrupts == []
    played_ms = int(r.played.sum()) * FRAME_MS
    assert played_ms >= 4000  # the greeting is long enough to talk over


async def test_speech_over_greeting_interrupts_and_flushes(greeting_only):
    words = trim_silence(speech("tell me a story please", voice="en-us"))
    caller = at(2000, words, 7000)
    r = await replay_async(caller)
    assert len(r.interrupts) == 1
    it = r.interrupts[0]
    assert 2000 <= it["at_ms"] <= 2000 + 400
    # no agent audio after the interrupt tick plus one frame, until the agent replies
    tick = int(it["at_ms"] // FRAME_MS)
    reply_start = next((i for i in range(tick + 2, len(r.played)) if r.played[i]), len(r.played))
    assert not r.played[tick + 2 : reply_start].any()
    heard = [e for e in r.events if e["type"] == "agent.heard"]
    assert heard and GREETING.startswith(heard[0]["text"])
    assert 0 < len(heard[0]["text"]) < len(GREETING)
    t = types(r)
    assert t.index("system.control.interrupt") < t.index("agent.heard")


def noise_cases(agent_out: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    total = len(agent_out)
    speech_rms = 3000.0
    click = np.zeros(total, dtype=np.float64)
    s = 2 * SAMPLE_RATE
    click[s : s + SAMPLE_RATE // 10] = rng.normal(0, 8000, SAMPLE_RATE // 10) * np.hanning(
        SAMPLE_RATE // 10)
    cough = np.zeros(total)
    n = SAMPLE_RATE // 10
    env = np.exp(-np.linspace(0, 6, n))
    cough[s : s + n] = rng.normal(0, 9000, n) * env
    white = rng.normal(0, speech_rms * 10 ** (-15 / 20), total)
    babble = np.zeros(total)
    for i, text in enumerate(["the weather is nice today", "please hold the line",
                              "numbers and letters go here", "we will be right back"]):
        voice = trim_silence(speech(text, voice=["en-us", "en+f3", "en+m3", "en-gb"][i]))
        rev = voice[::-1].astype(np.float64)
        for start in range(0, total - len(rev), len(rev) // 2):
            babble[start : start + len(rev)] += rev
    babble *= (speech_rms * 10 ** (-15 / 20)) / (np.sqrt(np.mean(babble**2)) + 1e-9)
    delay = 40 * SAMPLE_RATE // 1000
    echo = np.zeros(total)
    echo[delay:] = agent_out[:-delay].astype(np.float64) * 10 ** (-10 / 20)
    return {k: np.clip(v, -32768, 32767).astype(np.int16) for k, v in
            {"click": click, "cough": cough, "white": white, "babble": babble,
             "echo": echo}.items()}


@pytest.mark.parametrize("case", ["click", "cough", "white", "babble", "echo"])
async def test_noise_and_echo_do_not_interrupt(greeting_only, case):
    caller = noise_cases(greeting_only.agent[: 8 * SAMPLE_RATE])[case]
    r = await replay_async(caller)
    assert r.interrupts == [], f"{case} interrupted the agent"


async def test_one_llm_request_per_turn_and_reply_as_audio():
    q1 = trim_silence(speech("what time is it"))
    q2 = trim_silence(speech("hello"))
    # the greeting is ~12 s; ask after it, twice
    total = 30000
    caller = at(15000, q1, total) + at(22000, q2, total)
    r = await replay_async(caller)
    assert r.interrupts == []
    t = types(r)
    assert t.count("system.llm.request") == 2
    user = [e["content"] for e in r.events if e["type"] == "agent.transcript.update"
            and e.get("role") == "user"]
    assert user == ["what time is it", "hello"]
    chunks = [e for e in r.events if e["type"] == "agent.llm.response.chunk"]
    assert chunks[0]["text"].startswith("It is ")
    # the reply is played after the question
    reply_ms = next(e["t_ms"] for e in r.events if e["type"] == "agent.llm.response.chunk")
    played_after = r.played[int(reply_ms // FRAME_MS):].sum() * FRAME_MS
    assert played_after >= 800


async def test_agent_audio_in_chunks_plays_without_gaps():
    """A node streaming its own 24 kHz audio in chunks: the loop resamples it with one
    stateful resampler, so chunk boundaries neither drop samples nor click."""
    from agent.events import SDKAgentAudioEvent
    from agent.nodes import OutputAgentNode

    t = np.arange(24000) / 24000  # one second of a 440 Hz tone at 24 kHz
    tone = (8000 * np.sin(2 * np.pi * 440 * t)).astype("<i2")

    class Streamer(OutputAgentNode):
        async def on_event(self, event):
            if event.type == "system.user.joined":
                for i in range(0, len(tone), 2400):  # ten 100 ms chunks
                    await self.send_event(SDKAgentAudioEvent(pcm=tone[i : i + 2400].tobytes(),
                                                             sample_rate=24000))

    async def setup(session):
        session.add_node(Streamer("streamer"))
        await session.start()
        await session.wait_until_complete()

    r = await replay_async(np.zeros(2 * SAMPLE_RATE, dtype=np.int16), app=setup)
    played = r.agent[r.played.repeat(FRAME_MS * SAMPLE_RATE // 1000)].astype(np.int64)
    loud = np.flatnonzero(np.abs(played) > 500)
    body = played[loud[0] : loud[-1]]
    assert abs(len(body) - SAMPLE_RATE) < 80  # the whole second, within 5 ms
    # a 440 Hz tone of amplitude 8000 moves at most ~1400 per sample at 16 kHz
    assert np.abs(np.diff(body)).max() < 2000


async def test_speech_begun_over_a_non_interruptible_agent_counts_once_it_stops():
    """The caller starts talking 0.5 s before the end of an agent utterance that may not be
    interrupted and goes on after it: their turn is heard (the VAD start that came while
    the agent talked is not lost)."""
    from gateway.call import CallSettings

    whole = await replay_async(np.zeros(20 * SAMPLE_RATE, dtype=np.int16))
    played = np.flatnonzero(whole.played)
    assert played[-1] * FRAME_MS < 19000  # the greeting ended inside the recording
    greeting_end_ms = int(played[-1] + 1) * FRAME_MS
    words = trim_silence(speech("what time is it, what time is it", voice="en-us"))
    start = greeting_end_ms - 500
    caller = at(start, words, start + len(words) * 1000 // SAMPLE_RATE + 3000)
    r = await replay_async(caller, settings=CallSettings(interruptible=False))
    assert r.interrupts == []
    t = types(r)
    assert t.count("system.llm.request") == 1
    user = [e["content"] for e in r.events if e["type"] == "agent.transcript.update"
            and e.get("role") == "user"]
    assert user and "time" in user[0]


async def test_barge_in_the_vad_never_confirms_still_ends_the_turn():
    """A barge-in starts the caller's turn; if the VAD itself never starts (here: it would
    need 5 s of voice), the turn still ends after the VAD's stop time of unvoiced frames,
    with the words recognised, and the caller can interrupt again later."""
    from gateway.call import CallSettings
    from media.vad import VadConfig

    words = trim_silence(speech("what time is it", voice="en-us"))
    caller = at(2000, words, 9000)
    r = await replay_async(caller, settings=CallSettings(vad=VadConfig(start_ms=5000)))
    t = types(r)
    assert len(r.interrupts) == 1
    assert t.count("system.user.started_speaking") == 1
    assert t.count("system.user.stopped_speaking") == 1
    assert t.count("system.llm.request") == 1
    user = [e["content"] for e in r.events if e["type"] == "agent.transcript.update"
            and e.get("role") == "user"]
    assert user == ["what time is it"]


async def test_replay_plays_the_line_echo():
    """`echo_db` feeds the agent's own audio back into the caller channel, delayed: it
    is in what the loop heard, and it does not interrupt the agent; speech over it does."""
    silent = np.zeros(6 * SAMPLE_RATE, dtype=np.int16)
    r = await replay_async(silent, echo_db=-10, echo_ms=40)
    assert r.interrupts == []
    d = 40 * SAMPLE_RATE // 1000
    out, heard = r.agent[: len(r.caller) - d].astype(float), r.caller[d:].astype(float)
    loud = np.abs(out) > 3000
    assert loud.sum() > 8000
    ratio = np.sqrt(np.mean(heard[loud] ** 2) / np.mean(out[loud] ** 2))
    assert abs(20 * np.log10(ratio) + 10) < 0.5  # 10 dB down, 40 ms later

    words = trim_silence(speech("tell me a story please", voice="en-us"))
    r = await replay_async(at(2500, words, 6000), echo_db=-10, echo_ms=40)
    assert len(r.interrupts) == 1 and 2500 <= r.interrupts[0]["at_ms"] <= 2900
