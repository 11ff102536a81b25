"""A remote agent server that fails never leaves the caller in silence, and nothing it sends
after failing is played (issue 23, defect 6). Real peers over 127.0.0.1: our gateway, the
published SDK's own `AtomsApp` as the agent server, a Twilio Media Streams caller that
answers marks as Twilio does.

- The agent server is killed while its agent is talking (a greeting, then a reply it is
  streaming a few words at a time): what was said plays out, the reply ends where it broke
  off, then the apology, then the gateway hangs up, with an ERROR line naming the call.
- The agent server misses the handshake, then gets ready and speaks: the caller hears the
  apology and nothing after it.
- An agent server that closes the connection after `agent.end_call` has not failed: no
  apology.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from agent.events import SDKEvent, SDKSystemInitEvent
from gateway.app import AtomsApp
from gateway.remote_agent import RemoteSession
from tests.compat.published_agents import (
    LATE_WORDS,
    says_goodbye_and_leaves_setup,
    slow_starter_setup,
)
from tests.compat.published_server import free_port, published_atoms_app
from tests.compat.serve_published import published_server_process
from tests.compat.servers import HOST
from tests.kit.speech import needs_espeak
from tests.kit.twilio_caller import TwilioCaller, rms_dbfs

pytestmark = needs_espeak

APOLOGY = "Sorry, the agent is unavailable."
AUDIBLE_DBFS = -35.0


async def until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll a condition on state another task changes (the gateway's registry)."""
    async def loop() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def start_gateway(agent_url: str, **settings: Any) -> tuple[AtomsApp, int]:
    app = AtomsApp(agent_url=agent_url, host=HOST, apology=APOLOGY,
                   stt_phrases=["hello", "goodbye"], **settings)
    return app, await app.start(HOST, 0)


def heard(call: Any) -> list[str]:
    """What the caller heard of each utterance, in order."""
    return [e["text"] for e in call.timeline if e["type"] == "agent.heard"]


def said(call: Any) -> list[str]:
    """What reached the voice loop to be said: `agent.speak` texts and LLM replies."""
    out, reply = [], []
    for entry in call.timeline:
        if entry["type"] == "agent.speak":
            out.append(entry["text"])
        elif entry["type"] == "agent.llm.response.chunk":
            reply.append(entry["text"])
        elif entry["type"] == "agent.llm.response.end" and reply:
            out.append("".join(reply).strip())
            reply = []
    return out


async def test_agent_server_killed_mid_reply_ends_the_call(caplog):
    caplog.set_level(logging.INFO, logger="gateway")
    loop = asyncio.get_running_loop()
    port = free_port()
    async with published_server_process("narrator", port) as server:
        app, gw_port = await start_gateway(f"ws://127.0.0.1:{port}/ws")
        caller = TwilioCaller(f"ws://{HOST}:{gw_port}/twilio/stream")
        try:
            await caller.connect()
            await until(lambda: app.calls, 10, "the call")
            call = next(iter(app.calls.values()))
            await caller.wait_audio(3.0, timeout=15)  # the greeting and some of the story
            assert call.speaking.response_id is not None  # the reply is still streaming ...
            t_kill = loop.time()
            server.kill()  # ... when its server dies
            # generous: what was queued, the rest of the sentence and the apology play,
            # then the gateway hangs up (before the fix it never did)
            await asyncio.wait_for(caller.closed.wait(), 40)
            await until(lambda: not app.calls, 5, "the call to end")
        finally:
            await caller.close()
            await app.stop(drain_timeout=0.5)

    assert rms_dbfs(caller.audio_after(t_kill)) > AUDIBLE_DBFS  # it played out
    texts = said(call)
    assert texts[0] == "Welcome to the story line."
    assert texts[1].startswith("Once upon a time") and texts[-1] == APOLOGY
    assert heard(call)[-1] == APOLOGY  # in full, and last
    assert heard(call)[1:-1] and "".join(heard(call)[1:-1]).startswith("Once upon a time")
    ends = [e for e in call.timeline if e["type"] == "call.end"]
    assert ends[-1]["reason"] == "agent hung up"
    errors = [r.getMessage() for r in caplog.records
              if r.name == "gateway.remote_agent" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and call.call_id in errors[0]
    assert "call ended (agent hung up)" in caplog.text


async def test_late_speech_after_a_missed_handshake_is_never_played(caplog):
    caplog.set_level(logging.INFO, logger="gateway")
    async with published_atoms_app(slow_starter_setup) as url:
        app, gw_port = await start_gateway(url, agent_handshake_timeout=1.0)
        caller = TwilioCaller(f"ws://{HOST}:{gw_port}/twilio/stream")
        try:
            await caller.connect()
            await until(lambda: app.calls, 10, "the call")
            call = next(iter(app.calls.values()))
            await asyncio.wait_for(caller.closed.wait(), 20)  # apology, then hang-up
            await until(lambda: not app.calls, 5, "the call to end")
        finally:
            await caller.close()
            await app.stop(drain_timeout=0.5)

    assert said(call) == [APOLOGY]  # the late agent's words never reached the loop
    assert heard(call) == [APOLOGY]
    assert rms_dbfs(caller.audio_after(0.0)) > AUDIBLE_DBFS
    assert LATE_WORDS not in caplog.text
    ends = [e for e in call.timeline if e["type"] == "call.end"]
    assert ends[-1]["reason"] == "agent hung up"
    errors = [r.getMessage() for r in caplog.records
              if r.name == "gateway.remote_agent" and r.levelno == logging.ERROR]
    assert len(errors) == 1 and call.call_id in errors[0]


async def test_agent_server_closing_after_end_call_is_no_failure(caplog):
    caplog.set_level(logging.INFO, logger="gateway.remote_agent")
    async with published_atoms_app(says_goodbye_and_leaves_setup) as url:
        remote = RemoteSession(url, SDKSystemInitEvent(), call_id="c-leaves", apology=APOLOGY)
        out: list[SDKEvent] = []

        async def collect(event: SDKEvent) -> None:
            out.append(event)

        remote.set_output(collect)
        await remote.deliver(SDKSystemInitEvent())
        assert remote.is_started
        assert remote._reader is not None
        await asyncio.wait_for(remote._reader, 10)  # the server closed the connection
        await remote.close()
    assert [e.type for e in out] == ["agent.speak", "agent.end_call"]
    assert out[0].text == "Goodbye."  # and no apology after it
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
