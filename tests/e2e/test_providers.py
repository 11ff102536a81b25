"""Every provider's wire protocol against a running gateway with the demo agent.

One call per provider (Twilio, Telnyx, Plivo, Exotel, Vonage, the `/ws` web client and
AudioSocket over TCP), all at once against one in-process gateway: the caller hears ~1.5 s
of the greeting, talks over it ("what time is it"), hears the reply, presses a key and hangs
up. The per-provider tests then check what each far end received and what the session saw.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.e2e.harness import (
    CONFUSABLE,
    HOST,
    Recorder,
    Seen,
    codec_margin,
    rms_dbfs,
    start_gateway,
    utterance,
)
from tests.kit.clients import CLIENTS, FRAME_S, AgentFrame, CallClient

PROVIDERS = ["twilio", "telnyx", "plivo", "exotel", "vonage", "web", "audiosocket"]
QUESTION = "what time is it"
DIGIT = "7"
TALK_OVER_AFTER_S = 1.5  # start talking once this much of the greeting has been heard
PACING = 0.75  # audio worth D seconds must take at least PACING * D to arrive (real time: 1.0)


@dataclass
class CallResult:
    provider: str
    client: CallClient
    sid: str = ""
    error: str | None = None
    steps: list[str] = field(default_factory=list)
    t_talk: float = 0.0  # when the caller started talking over the greeting
    t_spoken: float = 0.0  # when the last frame of the question was sent
    completed: bool = False  # session.wait_until_complete() returned after the hang-up
    events: list[Seen] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)

    def first(self, etype: str, after: float = 0.0, **fields: Any) -> Seen | None:
        for seen in self.events:
            if seen.event.type == etype and seen.t >= after and all(
                    getattr(seen.event, k, None) == v for k, v in fields.items()):
                return seen
        return None


async def run_call(port: int, aport: int, rec: Recorder, provider: str) -> CallResult:
    cls = CLIENTS[provider]
    client = cls(HOST, aport if provider == "audiosocket" else port)
    res = CallResult(provider, client)
    loop = asyncio.get_running_loop()
    session = None
    try:
        await client.connect()
        await client.start()
        client.start_mic()
        res.sid = client.call_id
        session = await rec.session(res.sid)
        res.steps.append("session")
        await client.wait_audio(TALK_OVER_AFTER_S)
        res.steps.append("greeting heard")
        res.t_talk = loop.time()
        spoken = client.say(utterance(QUESTION, client.rate))
        await rec.event(res.sid, "system.control.interrupt", timeout=5)
        res.steps.append("interrupted")
        res.t_spoken = await spoken
        await rec.event(res.sid, "agent.transcript.update", role="user", timeout=10)
        res.steps.append("user turn")
        start = await rec.event(res.sid, "agent.llm.response.start", after=res.t_talk,
                                timeout=10)
        await rec.event(res.sid, "agent.transcript.update", role="assistant", after=start.t,
                        timeout=15)
        res.steps.append("reply heard")
        await client.dtmf(DIGIT)
        await rec.event(res.sid, "system.dtmf", digit=DIGIT, timeout=5)
        res.steps.append("dtmf")
    except Exception as exc:  # recorded; the tests report it with the steps reached
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        with contextlib.suppress(Exception):
            await client.hangup_and_wait()
        if session is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(session.wait_until_complete(), 5)
                res.completed = True
            res.context = dict(session.context)
        await client.close()
        res.events = list(rec.events.get(res.sid, []))
    return res


async def run_all() -> dict[str, CallResult]:
    # one pooled recogniser per caller that speaks at once, as a deployment sizes it: a
    # decoder made mid-call blocks the event loop for ~100 ms (pocketsphinx holds the GIL),
    # and agent frames sent before an interrupt then reach the in-process client that late
    gw = await start_gateway(audiosocket_port=0, stt_pool=len(PROVIDERS))
    try:
        assert gw.app.audiosocket_port
        results = await asyncio.gather(
            *(run_call(gw.port, gw.app.audiosocket_port, gw.rec, p) for p in PROVIDERS))
        await asyncio.sleep(0)  # let the last hooks run
    finally:
        await gw.app.stop(drain_timeout=1)
    return {r.provider: r for r in results}


@pytest.fixture(scope="module")
def calls() -> dict[str, CallResult]:
    return asyncio.run(run_all())


def ok(r: CallResult) -> None:
    assert not r.client.problems, f"{r.provider}: gateway sent bad messages: {r.client.problems}"
    assert r.error is None, f"{r.provider}: {r.error} (steps reached: {r.steps})"


def check_paced(frames: list[AgentFrame], what: str) -> None:
    """Audio worth D seconds arrived over at least PACING * D (not dumped at once)."""
    assert len(frames) >= 2
    span = frames[-1].t - frames[0].t
    audio = (len(frames) - 1) * FRAME_S
    assert span >= PACING * audio, (
        f"{what}: {audio:.2f} s of audio arrived within {span:.2f} s")


def check_audible_voice(frames: list[AgentFrame], codec: str, what: str) -> None:
    """Well above silence, and voice-like only when decoded with the call's codec."""
    pcm = np.concatenate([f.pcm for f in frames])
    level = rms_dbfs(pcm)
    assert level > -35, f"{what}: agent audio at {level:.1f} dBFS is near silence"
    right, wrong = codec_margin(pcm, codec)
    assert right > 0.5 and right > wrong + 0.05, (
        f"{what}: not voice-like as {codec} (smoothness {right:.2f}; as "
        f"{CONFUSABLE[codec]}: {wrong:.2f})")


def interrupt_time(r: CallResult) -> float:
    seen = r.first("system.control.interrupt")
    assert seen is not None, f"{r.provider}: no system.control.interrupt"
    return seen.t


def reply_start(r: CallResult) -> float:
    seen = r.first("agent.llm.response.start", after=r.t_talk)
    assert seen is not None, f"{r.provider}: no reply started"
    return seen.t


@pytest.mark.parametrize("provider", PROVIDERS)
def test_greeting_arrives_framed_paced_and_audible(calls, provider):
    r = calls[provider]
    ok(r)
    greeting = [f for f in r.client.agent_frames if f.t < interrupt_time(r)]
    assert len(greeting) * FRAME_S >= TALK_OVER_AFTER_S
    check_paced(greeting[:100], f"{provider} greeting")
    check_audible_voice(greeting, r.client.codec, f"{provider} greeting")


@pytest.mark.parametrize("provider", PROVIDERS)
def test_talking_over_the_greeting_interrupts_and_clears(calls, provider):
    r = calls[provider]
    ok(r)
    t_int = interrupt_time(r)
    assert t_int > r.t_talk
    if provider == "audiosocket":
        assert not [c for c in r.client.controls if c.kind == "clear"]
    else:
        clears = [c for c in r.client.controls if c.kind == "clear"]
        assert len(clears) == 1, f"{provider}: clear messages {clears}"
        assert clears[0].t >= t_int
    # the agent's audio stops: nothing arrives after the clear message (stream order: the
    # client stamps frames and controls as its one receive loop reads them) or, without a
    # clear (AudioSocket), from shortly after the interrupt, until the reply
    reply_t = reply_start(r)
    if provider == "audiosocket":
        late = [f for f in r.client.agent_frames if t_int + 0.1 <= f.t < reply_t]
    else:
        late = [f for f in r.client.agent_frames if clears[0].t < f.t < reply_t]
    assert not late, (f"{provider}: {len(late)} agent frames after the interrupt, at "
                      f"{[round((f.t - t_int) * 1000) for f in late]} ms after it; "
                      f"reply at {round((reply_t - t_int) * 1000)} ms")
    # what the caller heard of the greeting: a strict prefix of it
    from gateway.demo import GREETING

    heard = r.first("agent.transcript.update", role="assistant")
    assert heard is not None and heard.t >= t_int
    assert GREETING.startswith(heard.event.content)
    assert 0 < len(heard.event.content) < len(GREETING)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_reply_is_recognised_and_heard(calls, provider):
    r = calls[provider]
    ok(r)
    user = r.first("agent.transcript.update", role="user")
    assert user is not None and user.event.content == QUESTION
    start = reply_start(r)
    text = "".join(s.event.text for s in r.events
                   if s.event.type == "agent.llm.response.chunk" and s.t >= start)
    assert text.startswith("It is ") and text.endswith(".")
    reply = [f for f in r.client.agent_frames if f.t >= start]
    assert len(reply) * FRAME_S >= 0.6, f"{provider}: only {len(reply)} reply frames"
    check_paced(reply, f"{provider} reply")
    check_audible_voice(reply, r.client.codec, f"{provider} reply")
    # the reply came after the question was fully sent
    assert reply[0].t > r.t_spoken


@pytest.mark.parametrize("provider", PROVIDERS)
def test_dtmf_reaches_the_session(calls, provider):
    r = calls[provider]
    ok(r)
    assert r.first("system.dtmf", digit=DIGIT) is not None


@pytest.mark.parametrize("provider", PROVIDERS)
def test_hangup_ends_the_session(calls, provider):
    r = calls[provider]
    ok(r)
    assert r.completed, f"{provider}: session.wait_until_complete() did not return"
    assert r.first("system.user.left") is not None
    assert r.client.closed.is_set()


EXPECTED_CONTEXT = {
    "twilio": {"From": "+15550001111", "To": "+15550002222"},
    "telnyx": {"campaign": "e2e"},
    "plivo": {"crm": "e2e", "lang": "en"},
    "exotel": {"key1": "value1"},
    "vonage": {"from": "447700900000", "to": "447700900001"},
    "web": {"page": "e2e"},
}


@pytest.mark.parametrize("provider", sorted(EXPECTED_CONTEXT))
def test_call_parameters_reach_session_context(calls, provider):
    r = calls[provider]
    assert r.sid, f"{provider}: no session ({r.error})"
    params = r.context.get("custom_parameters", {})
    for key, value in EXPECTED_CONTEXT[provider].items():
        assert params.get(key) == value, f"{provider}: context {r.context}"
    assert r.context.get("provider") == provider
