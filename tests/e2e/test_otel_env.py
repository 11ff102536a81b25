"""`OTEL_TRACES_EXPORTER=console atoms-gateway serve`: the standard variables alone turn
tracing on in a real process, and a call's spans come out with its transport and the
service name from `OTEL_SERVICE_NAME` (issue 24, item 2)."""

from __future__ import annotations

import json
import signal

import aiohttp

from tests.kit.serve_process import start_serve


async def test_console_spans_from_the_otel_variables(tmp_path):
    served = await start_serve(tmp_path / "serve.log", env={
        "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "atoms-test",
        "OTEL_BSP_SCHEDULE_DELAY": "100"})
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(
                f"ws://127.0.0.1:{served.port}/ws") as ws:
            await ws.send_json({"type": "start", "sample_rate": 16000})
            await ws.send_json({"type": "text", "text": "what time is it"})
            async for msg in ws:  # until the demo agent's answer has played
                if msg.type != aiohttp.WSMsgType.TEXT:
                    continue
                event = json.loads(msg.data)
                if (event.get("type") == "agent.transcript.update"
                        and event.get("role") == "assistant"
                        and event.get("content", "").startswith("It is")):
                    break
            await ws.send_json({"type": "hangup"})
    finally:
        assert await served.stop(signal.SIGTERM) == 0  # (the exporter flushes at exit)
    text = served.text()
    assert "traces: OpenTelemetry" in text
    spans = _json_objects(text)
    names = {s["name"] for s in spans}
    assert {"call", "turn", "tts"} <= names, names
    call = next(s for s in spans if s["name"] == "call")
    assert call["attributes"]["atoms.transport"] == "web"
    assert call["resource"]["attributes"]["service.name"] == "atoms-test"
    turn = next(s for s in spans if s["name"] == "turn" and "atoms.reply_latency_ms"
                in s["attributes"])
    assert turn["parent_id"] == call["context"]["span_id"]


def _json_objects(text: str) -> list[dict]:
    """The console exporter's spans: indented JSON objects among the log lines."""
    out, depth, start = [], 0, None
    for i, c in enumerate(text):
        if c == "{" and (depth or text[i - 1:i] in ("\n", "")):
            if depth == 0:
                start = i
            depth += 1
        elif c == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                try:
                    obj = json.loads(text[start:i + 1])
                except ValueError:
                    pass
                else:
                    if isinstance(obj, dict) and "name" in obj and "context" in obj:
                        out.append(obj)
    return out
