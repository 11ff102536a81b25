"""Our gateway with a remote agent on the published SDK's own `AtomsApp`, called over the
Twilio Media Streams protocol.

The caller hears the remote agent's greeting as audio; talking over it reaches the remote
nodes as `system.control.interrupt`; the caller's turn reaches them as `system.llm.request`
and the reply comes back as audio. An agent server killed mid-call ends that call cleanly
(apology audio, then the stream is closed) and the next call, on a restarted server, works.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from gateway.app import AtomsApp
from tests.compat.porting import load_agent
from tests.compat.published_server import free_port, published_atoms_app
from tests.compat.serve_published import published_server_process
from tests.compat.servers import HOST
from tests.kit.speech import needs_espeak, speech, trim_silence
from tests.kit.twilio_caller import RATE, TwilioCaller, rms_dbfs

pytestmark = needs_espeak

QUESTION = "what time is it"
APOLOGY = "Sorry, the agent is unavailable."
AUDIBLE_DBFS = -35.0


async def until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    """Poll a condition on state another task changes (the remote agent's records)."""
    async def loop() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(loop(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def start_gateway(agent_url: str) -> tuple[AtomsApp, int]:
    app = AtomsApp(agent_url=agent_url, host=HOST, apology=APOLOGY,
                   stt_phrases=[QUESTION, "goodbye", "hello"])
    return app, await app.start(HOST, 0)


def spoken(call: Any) -> list[str]:
    """What the agent said in a call (`agent.speak` texts and LLM replies)."""
    out, reply = [], []
    for entry in call.timeline:
        if entry["type"] == "agent.speak":
            out.append(entry["text"])
        elif entry["type"] == "agent.llm.response.chunk":
            reply.append(entry["text"])
        elif entry["type"] == "agent.llm.response.end" and reply:
            out.append("".join(reply))
            reply = []
    return out


async def test_call_with_remote_published_agent():
    module = load_agent("sales", "published")
    inits: list[Any] = []

    async def setup(session: Any) -> None:
        inits.append(session._init_event)
        await module.setup(session)

    loop = asyncio.get_running_loop()
    seen: dict[str, float] = {}  # when the remote agent first saw each event type

    class Stamped(list[str]):
        def append(self, item: str) -> None:
            seen.setdefault(item, loop.time())
            super().append(item)

    module.RECEIVED = Stamped(module.RECEIVED)
    async with published_atoms_app(setup) as url:
        app, port = await start_gateway(url)
        caller = TwilioCaller(f"ws://{HOST}:{port}/twilio/stream")
        try:
            await caller.connect()
            await until(lambda: app.calls, 5, "the call")
            call = next(iter(app.calls.values()))
            await caller.wait_audio(1.0, timeout=10)
            greeting = caller.audio_after(0.0)
            assert rms_dbfs(greeting) > AUDIBLE_DBFS

            # talk over the greeting
            done = caller.say(trim_silence(speech(QUESTION, rate=RATE)))
            await caller.wait_for(lambda: any(c == "clear" for _, c in caller.controls), 5,
                                  "Twilio clear (barge-in)")
            t_clear = next(t for t, c in caller.controls if c == "clear")
            await until(lambda: "system.control.interrupt" in module.RECEIVED, 5,
                        "the interrupt at the remote agent")
            await done
            await until(lambda: "system.llm.request" in module.RECEIVED, 10,
                        "the user's turn at the remote agent")
            t_request = seen["system.llm.request"]  # the reply may start before we poll
            await caller.wait_audio(0.8, after=t_request, timeout=10)
            reply = caller.audio_after(t_request)
            assert rms_dbfs(reply) > AUDIBLE_DBFS
            # nothing of the greeting after the clear, until the reply
            assert not [t for t, _ in caller.frames if t_clear + 0.1 < t < t_request]
            await caller.wait_quiet()
        finally:
            await caller.hangup()
            await caller.close()
            await until(lambda: not app.calls, 5, "the call to end")
            await app.stop(drain_timeout=0.5)

    assert caller.close_code is not None
    # what the remote nodes received, in order
    got = module.RECEIVED
    assert got[0] == "system.user.joined"
    assert got.index("system.control.interrupt") < got.index("system.llm.request")
    assert "system.user.started_speaking" in got
    assert module.SEEN == got  # the tracker saw the same stream in front of the agent
    # the greeting was spoken, cut, and the reply answered the recognised question
    assert spoken(call)[0] == module.GREETING
    assert spoken(call)[1] == f"You said: {QUESTION}"
    heard = [e for e in call.timeline if e["type"] == "agent.heard"]
    assert heard and len(heard[0]["text"]) < len(module.GREETING)
    # system.init carried the call's variables (4.4.0's model keeps no `caller`)
    context = inits[0].session_context
    assert context.initial_variables == caller.params
    assert context.conversation_type.value == "telephonyInbound"


async def test_agent_server_killed_mid_call(caplog):
    caplog.set_level(logging.ERROR, logger="gateway.remote_agent")
    loop = asyncio.get_running_loop()
    first_port = free_port()
    async with published_server_process("pipeline", first_port) as server:
        app, port = await start_gateway(f"ws://127.0.0.1:{first_port}/ws")
        try:
            caller = TwilioCaller(f"ws://{HOST}:{port}/twilio/stream")
            await caller.connect()
            await until(lambda: app.calls, 5, "the call")
            call = next(iter(app.calls.values()))
            await caller.wait_audio(0.5)
            await caller.wait_quiet()  # the greeting is over
            t_kill = loop.time()
            server.kill()
            await caller.wait_audio(0.5, after=t_kill)
            assert rms_dbfs(caller.audio_after(t_kill)) > AUDIBLE_DBFS
            await asyncio.wait_for(caller.closed.wait(), 10)  # the gateway hung up
            await caller.close()
            await until(lambda: not app.calls, 5, "the call to end")
            assert spoken(call) == ["Concierge desk, how can I help?", APOLOGY]
            assert call.timeline[-1]["type"] == "call.end"
            assert any(call.call_id in r.getMessage() for r in caplog.records)

            # the next call, with the agent server restarted on another port
            second_port = free_port()
            async with published_server_process("pipeline", second_port):
                app.settings.agent_url = f"ws://127.0.0.1:{second_port}/ws"
                caller = TwilioCaller(f"ws://{HOST}:{port}/twilio/stream")
                await caller.connect()
                await until(lambda: app.calls, 5, "the next call")
                call = next(iter(app.calls.values()))
                await caller.wait_audio(1.0)
                assert rms_dbfs(caller.audio_after(0.0)) > AUDIBLE_DBFS
                await caller.wait_quiet()
                await caller.hangup()
                await caller.close()
                await until(lambda: not app.calls, 5, "the next call to end")
            assert spoken(call) == ["Concierge desk, how can I help?"]
            assert call.timeline[-1]["type"] == "call.end"
            assert call.timeline[-1]["reason"] != "agent hung up"
        finally:
            await app.stop(drain_timeout=0.5)
