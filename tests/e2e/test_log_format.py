"""`atoms-gateway serve --log-format json --log-redact` as a real process: every line it
logs is one JSON object, the start-up lines say what is on, and a typed turn on /ws gives a
conversation line whose texts are redacted (issue 24, item 3)."""

from __future__ import annotations

import asyncio
import json
import signal

import aiohttp

from tests.kit.serve_process import start_serve

SECRET = "what time is it"


async def test_json_lines_with_the_words_redacted(tmp_path):
    served = await start_serve(tmp_path / "serve.log", "--log-format", "json", "--log-redact")
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"ws://127.0.0.1:{served.port}/ws") as ws:
            await ws.send_json({"type": "start", "sample_rate": 16000})
            await ws.send_json({"type": "text", "text": SECRET})
            async for msg in ws:  # until the demo agent's answer has played
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                if (event.get("type") == "agent.transcript.update"
                        and event.get("role") == "assistant"
                        and event.get("content", "").startswith("It is")):
                    break
            await ws.send_json({"type": "hangup"})
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while "gateway.conversation" not in served.text() and loop.time() < deadline:
            await asyncio.sleep(0.05)
    finally:
        assert await served.stop(signal.SIGTERM) == 0
    lines = served.text().splitlines()
    objects = [json.loads(line) for line in lines]  # each line parses, alone
    assert all({"ts", "level", "logger", "message"} <= set(o) for o in objects)
    messages = [o["message"] for o in objects]
    assert "metrics: GET /metrics (Prometheus)" in messages
    assert "conversation log: one line per turn, words redacted" in messages
    turns = [o for o in objects if o["logger"] == "gateway.conversation"]
    assert turns, messages
    turn = turns[-1]["turn"]
    assert turn["caller"] == "[redacted]" and turn["agent"] == "[redacted]"
    assert turn["transport"] == "web" and turn["reply_ms"] is not None
    assert SECRET not in served.text()
