"""A scriptable local server that speaks OpenAI's `/v1/chat/completions`, for tests.

The test queues `Reply` objects; each request takes the next one (or `default`). A reply is
text split into small deltas, tool calls split into several deltas (optionally interleaved),
an HTTP error, or a stream that breaks off after N chunks: `cut_after` drops the connection
mid-body, `end_after` ends the body cleanly without `finish_reason` or `[DONE]`,
`error_after` sends an OpenAI error event and ends, `stall_after` holds the stream open
until `release()` or until the client leaves (`disconnects` counts that, `disconnected` is
set).
Streaming follows OpenAI's wire format: `data: {chat.completion.chunk}` server-sent events,
the usage chunk when `stream_options.include_usage` is set, then `data: [DONE]`.

    async with FakeOpenAIServer([Reply.text("Hi there")]) as server:
        client = OpenAIClient(base_url=server.url, max_retries=0)
        ...
        assert server.requests[0].messages[-1]["content"] == "hello"
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.kit.servers.local_server import LocalServer

MODEL = "fake-gpt"


@dataclass
class ToolCallSpec:
    """A tool call the fake model makes; `arguments` may be a dict or the exact JSON text."""

    name: str
    arguments: str | dict[str, Any] = "{}"
    id: str | None = None

    def arguments_text(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


@dataclass
class Reply:
    """One scripted answer."""

    content: str | None = None
    tool_calls: list[ToolCallSpec] = field(default_factory=list)
    chunk_size: int = 4
    status: int = 200
    error_message: str = "The server had an error while processing your request."
    finish_reason: str | None = None
    interleave: bool = False
    cut_after: int | None = None
    end_after: int | None = None
    stall_after: int | None = None
    error_after: int | None = None

    @classmethod
    def text(cls, content: str, chunk_size: int = 4, **kw: Any) -> Reply:
        return cls(content=content, chunk_size=chunk_size, **kw)

    @classmethod
    def tools(cls, *calls: ToolCallSpec, chunk_size: int = 4, **kw: Any) -> Reply:
        return cls(tool_calls=list(calls), chunk_size=chunk_size, **kw)

    @classmethod
    def error(cls, status: int = 500, message: str | None = None) -> Reply:
        reply = cls(status=status)
        if message is not None:
            reply.error_message = message
        return reply

    def resolved_finish_reason(self) -> str:
        if self.finish_reason:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


@dataclass
class ReceivedRequest:
    """What the server received: the JSON body and the headers (lower-case names)."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.body.get("messages", [])

    @property
    def tools(self) -> list[dict[str, Any]] | None:
        return self.body.get("tools")

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    @property
    def model(self) -> str | None:
        return self.body.get("model")


def _pieces(text: str, size: int) -> list[str]:
    size = max(1, size)
    return [text[i:i + size] for i in range(0, len(text), size)]


def _tool_call_deltas(index: int, spec: ToolCallSpec, call_id: str, size: int) -> list[dict]:
    first = {
        "index": index,
        "id": call_id,
        "type": "function",
        "function": {"name": spec.name, "arguments": ""},
    }
    rest = [
        {"index": index, "function": {"arguments": piece}}
        for piece in _pieces(spec.arguments_text(), size)
    ]
    return [first, *rest]


def _count_tokens(text: str) -> int:
    return len(text.split())


class FakeOpenAIServer(LocalServer):
    """An aiohttp server on 127.0.0.1 (ephemeral port) playing scripted chat completions."""

    def __init__(self, replies: list[Reply] | None = None, *, model: str = MODEL) -> None:
        super().__init__()
        self.replies: deque[Reply] = deque(replies or ())
        self.default: Reply | None = None
        self.model = model
        self.requests: list[ReceivedRequest] = []
        self.disconnects = 0
        self.disconnected = asyncio.Event()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        """The base URL to give an OpenAI client (ends in `/v1`)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def add(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({
            "object": "list",
            "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "fake"}],
        })

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return self._error_response(400, "request body is not JSON", "invalid_request_error")
        self.requests.append(ReceivedRequest(
            path=request.path,
            body=body,
            headers={k.lower(): v for k, v in request.headers.items()},
        ))
        if self.replies:
            reply = self.replies.popleft()
        elif self.default is not None:
            reply = self.default
        else:
            return self._error_response(500, "FakeOpenAIServer: no scripted reply left")
        if reply.status != 200:
            return self._error_response(reply.status, reply.error_message)
        n = next(self._ids)
        if body.get("stream"):
            return await self._stream(request, body, reply, n)
        return web.json_response(self._completion(body, reply, n))

    def _error_response(
        self, status: int, message: str, kind: str = "server_error"
    ) -> web.Response:
        return web.json_response(
            {"error": {"message": message, "type": kind, "param": None, "code": None}},
            status=status,
        )

    def _call_ids(self, reply: Reply, n: int) -> list[str]:
        return [spec.id or f"call_{n}_{i}" for i, spec in enumerate(reply.tool_calls)]

    def _usage(self, body: dict[str, Any], reply: Reply) -> dict[str, int]:
        prompt = sum(
            _count_tokens(m["content"])
            for m in body.get("messages", [])
            if isinstance(m, dict) and isinstance(m.get("content"), str)
        )
        completion = _count_tokens(reply.content or "") + sum(
            len(spec.arguments_text()) // 4 + 1 for spec in reply.tool_calls
        )
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _completion(self, body: dict[str, Any], reply: Reply, n: int) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": reply.content, "refusal": None}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call_id,
                    "type": "function",
                    "function": {"name": spec.name, "arguments": spec.arguments_text()},
                }
                for spec, call_id in zip(reply.tool_calls, self._call_ids(reply, n), strict=True)
            ]
        return {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion",
            "created": 1_700_000_000 + n,
            "model": body.get("model", self.model),
            "system_fingerprint": "fp_fake",
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": reply.resolved_finish_reason(),
            }],
            "usage": self._usage(body, reply),
        }

    def _deltas(self, reply: Reply, n: int) -> list[dict[str, Any]]:
        """The `delta` objects of the stream, before the closing one."""
        deltas: list[dict[str, Any]] = []
        if reply.content is not None or not reply.tool_calls:
            deltas.append({"role": "assistant", "content": ""})
            deltas += [{"content": p} for p in _pieces(reply.content or "", reply.chunk_size)]
        per_call = [
            _tool_call_deltas(i, spec, call_id, reply.chunk_size)
            for i, (spec, call_id) in enumerate(
                zip(reply.tool_calls, self._call_ids(reply, n), strict=True))
        ]
        if reply.interleave:
            ordered = [
                d for group in itertools.zip_longest(*per_call) for d in group if d is not None
            ]
        else:
            ordered = [d for group in per_call for d in group]
        for i, tool_delta in enumerate(ordered):
            delta: dict[str, Any] = {"tool_calls": [tool_delta]}
            if i == 0 and not deltas:
                delta = {"role": "assistant", "content": None, **delta}
            deltas.append(delta)
        return deltas

    async def _stream(
        self, request: web.Request, body: dict[str, Any], reply: Reply, n: int
    ) -> web.StreamResponse:
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        envelope = {
            "id": f"chatcmpl-fake{n}",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000 + n,
            "model": body.get("model", self.model),
            "system_fingerprint": "fp_fake",
        }
        events: list[dict[str, Any]] = []
        for delta in self._deltas(reply, n):
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            events.append({**envelope, "choices": [choice]})
        closing = {"index": 0, "delta": {}, "logprobs": None,
                   "finish_reason": reply.resolved_finish_reason()}
        events.append({**envelope, "choices": [closing]})
        if include_usage:
            for event in events:
                event["usage"] = None
            events.append({**envelope, "choices": [], "usage": self._usage(body, reply)})

        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream; charset=utf-8",
            "Cache-Control": "no-cache",
        })
        await response.prepare(request)
        try:
            for sent, event in enumerate(events):
                if sent == reply.cut_after:
                    transport = request.transport
                    if transport is not None:
                        transport.abort()
                    return response
                if sent == reply.end_after:
                    await response.write_eof()
                    return response
                if sent == reply.error_after:
                    error = {"error": {"message": reply.error_message, "type": "server_error",
                                       "param": None, "code": None}}
                    await response.write(f"data: {json.dumps(error)}\n\n".encode())
                    await response.write_eof()
                    return response
                if sent == reply.stall_after:
                    await self._release.wait()
                await response.write(f"data: {json.dumps(event)}\n\n".encode())
            await response.write(b"data: [DONE]\n\n")
            await response.write_eof()
        except asyncio.CancelledError:
            self._client_left()
            raise
        except ConnectionResetError:
            self._client_left()
        return response

    def _client_left(self) -> None:
        self.disconnects += 1
        self.disconnected.set()


@contextlib.asynccontextmanager
async def openai_server(*replies: Reply):
    """`async with openai_server(Reply.text("hi")) as server:` — a started FakeOpenAIServer."""
    server = FakeOpenAIServer(list(replies))
    await server.start()
    try:
        yield server
    finally:
        await server.close()
