"""Where the published SDK (4.4.0) and ours behave differently, each shown on both.

The same agent source and the same event script run on both servers (see
`test_source_compat`); these scripts go where the two part ways on purpose.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from tests.compat.orchestrator import Orchestrator, Step, saw
from tests.compat.published_agents import greeter_setup
from tests.compat.scripts import (
    chunks,
    echo,
    ends,
    llm_request,
    run_agent,
    user,
)
from tests.compat.servers import serve
from tests.kit.servers.openai_server import Reply


def both(name: str, extra: list[Step], replies: list[Reply] | None = None):
    async def go():
        return [await run_agent(name, flavor, extra, replies)
                for flavor in ("published", "ours")]

    return asyncio.run(go())


def test_no_generation_after_end_call():
    """4.4.0 keeps answering after `agent.end_call`; ours stops generating."""
    extra = [Step(user("hello?"), echo("hello?")),
             Step(llm_request(), saw("system.llm.request", 4))]
    published, ours = both("shopkeeper", extra, [Reply.text("Still here.")])
    assert chunks(published.received)[-1] == "Still here."
    assert chunks(ours.received) == ["We have 3 pairs of boots.", "Sorry, no slippers.",
                                      "Goodbye!"]
    assert len(published.llm.requests) == 7 and len(ours.llm.requests) == 6


def test_reply_stays_in_context_without_a_transcript():
    """Without the platform's assistant transcript, 4.4.0 forgets its own reply; ours keeps
    it (and replaces it with what was heard once a transcript comes)."""
    extra = [Step(user("one more"), echo("one more")), Step(llm_request(), ends(3))]
    published, ours = both("receptionist", extra)
    theirs, mine = published.module.CONTEXTS[-1], ours.module.CONTEXTS[-1]
    reply = {"role": "assistant",
             "content": "Certainly! Message 3 of our talk was: and breakfast"}
    assert mine == theirs[:-1] + [reply, theirs[-1]]


def test_llm_request_messages_replace_the_conversation():
    """`system.llm.request.messages` (not in 4.4.0's model: ignored there) replaces the
    output node's non-system messages on ours."""
    platform = [{"role": "user", "content": "I need a room"},
                {"role": "assistant", "content": "For when?"},
                {"role": "user", "content": "tonight"}]
    raw = json.dumps({"type": "system.llm.request", "messages": platform}).encode()
    published, ours = both("receptionist", [Step(raw, ends(3))])
    assert published.module.CONTEXTS[-1][-1] == {"role": "user", "content": "and breakfast"}
    assert ours.module.CONTEXTS[-1][2:] == platform
    assert ours.module.CONTEXTS[-1][:2] == published.module.CONTEXTS[-1][:2]  # system kept
    assert chunks(ours.received)[-1] == "Certainly! Message 3 of our talk was: tonight"


@pytest.mark.parametrize("name", ["pipeline"])
def test_empty_chunks(name):
    """4.4.0 sends an `agent.llm.response.chunk` for every yielded string, "" included;
    ours skips empty ones. The text is the same."""
    published, ours = both(name, [])
    empty = [m for m in published.received
             if m["type"] == "agent.llm.response.chunk" and m["text"] == ""]
    assert len(empty) == 1
    assert not [m for m in ours.received
                if m["type"] == "agent.llm.response.chunk" and not m["text"]]
    assert chunks(ours.received) == chunks(published.received)


async def test_broken_init():
    """A malformed `system.init`: ours sends `agent.error` and closes (1003); 4.4.0 runs the
    setup handler anyway, `start()` raises, and the connection drops (1006, no event)."""
    got = {}
    for flavor in ("published", "ours"):
        async with serve(flavor, greeter_setup) as url:
            client = Orchestrator(url)
            await client.connect()
            await client.send_raw(b'{"type": "system.init", "version": ')
            await asyncio.wait_for(client.closed.wait(), 5)
            got[flavor] = ([m["type"] for m in client.received], client.close_code)
    assert got == {"published": ([], 1006), "ours": (["agent.error"], 1003)}
