"""Chat client for OpenAI and OpenAI-compatible servers, built on the official `openai` package.

`OpenAIClient.chat(messages, stream=True)` returns a `ChatStream`: iterate it directly
(`async for chunk in client.chat(...)`) or await it first (`stream = await client.chat(...)`),
both as the published SDK's examples do. Streamed tool calls are assembled from their deltas and
delivered complete on one extra chunk at the end. Every failure surfaces as an `LLMError`
subclass: an HTTP error status, an unreachable server, a timeout, or a stream that breaks off
before the model finished.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import openai
from openai import AsyncOpenAI

from agent.clients.observe import first_token_observer
from agent.clients.types import (
    ChatChunk,
    ChatResponse,
    LLMConfigError,
    LLMConnectionError,
    LLMError,
    LLMStatusError,
    LLMStreamError,
    LLMTimeoutError,
    ToolCall,
)
from agent.ownership import adopt

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
PLACEHOLDER_API_KEY = "not-needed"
DEFAULT_TIMEOUT = openai.Timeout(60.0, connect=10.0)
DEFAULT_MAX_RETRIES = 1


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


def _describe(err: BaseException) -> str:
    """The error's message, with its underlying cause when that says more."""
    text = str(err) or type(err).__name__
    cause = err.__cause__ or err.__context__
    if cause is not None and str(cause) and str(cause) not in text:
        text = f"{text} ({type(cause).__name__}: {cause})"
    return text


def _translate(err: openai.OpenAIError, where: str) -> LLMError:
    """Map an `openai` exception raised while opening a request to our error types."""
    if isinstance(err, openai.APIStatusError):
        body = err.body
        message = body.get("message") if isinstance(body, dict) else None
        return LLMStatusError(
            f"LLM server answered HTTP {err.status_code} at {where}: {message or err.message}",
            status_code=err.status_code,
            body=err.body,
        )
    if isinstance(err, openai.APITimeoutError):
        return LLMTimeoutError(f"LLM request to {where} timed out")
    if isinstance(err, openai.APIConnectionError):
        return LLMConnectionError(f"could not reach the LLM server at {where}: {_describe(err)}")
    return LLMError(f"LLM request to {where} failed: {_describe(err)}")


@dataclass
class _PartialCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class ToolCallAssembler:
    """Joins streamed tool-call deltas into complete calls.

    Deltas are matched by their `index`; a delta with a new `id` at a used index (as some
    compatible servers send) starts a new call, and a delta without an index continues the
    latest call. Calls without an id get a generated one, so results can refer to them.
    """

    def __init__(self) -> None:
        self._calls: list[_PartialCall] = []
        self._by_index: dict[int, _PartialCall] = {}

    def add(self, deltas: list[Any]) -> None:
        for delta in deltas:
            index = getattr(delta, "index", None)
            call_id = getattr(delta, "id", None) or ""
            if index is not None:
                call = self._by_index.get(index)
            else:
                call = self._calls[-1] if self._calls else None
            if call is None or (call_id and call.id and call_id != call.id):
                call = _PartialCall()
                self._calls.append(call)
                if index is not None:
                    self._by_index[index] = call
            if call_id:
                call.id = call_id
            function = getattr(delta, "function", None)
            if function is None:
                continue
            name = getattr(function, "name", None)
            if name and not (call.arguments and name == call.name):
                call.name += name
            arguments = getattr(function, "arguments", None)
            if arguments:
                call.arguments += arguments

    def calls(self) -> list[ToolCall]:
        return [
            ToolCall(id=c.id or f"call_{n}", name=c.name, arguments=c.arguments)
            for n, c in enumerate(self._calls)
            if c.name
        ]


class ChatStream:
    """A streamed chat answer: an async iterator of `ChatChunk`, also awaitable (to itself).

    After the stream ends, `finish_reason`, `tool_calls`, `usage` and `text` (all content
    joined) describe the whole answer. Leaving the iteration early, or cancelling the task
    that iterates, closes the HTTP response.
    """

    def __init__(self, client: OpenAIClient, params: dict[str, Any]) -> None:
        self._client = client
        self._params = params
        self._gen: AsyncIterator[ChatChunk] | None = None
        self.finish_reason: str | None = None
        self.tool_calls: list[ToolCall] = []
        self.usage: dict[str, Any] | None = None
        self.text = ""

    def __await__(self) -> Generator[Any, None, ChatStream]:
        return self._self().__await__()

    async def _self(self) -> ChatStream:
        return self

    def __aiter__(self) -> ChatStream:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._gen is None:
            self._gen = self._run()
        return await self._gen.__anext__()

    async def aclose(self) -> None:
        """Stop the stream and release its connection."""
        if self._gen is not None:
            await self._gen.aclose()  # type: ignore[attr-defined]

    async def __aenter__(self) -> ChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _run(self) -> AsyncIterator[ChatChunk]:
        api = self._client._api()
        where = self._client.base_url
        observer = first_token_observer.get()
        t0 = time.monotonic()
        try:
            stream = await api.chat.completions.create(**self._params)
        except openai.OpenAIError as err:
            raise _translate(err, where) from err
        assembler = ToolCallAssembler()
        received = 0
        try:
            try:
                async for raw in stream:
                    received += 1
                    if getattr(raw, "usage", None) is not None:
                        self.usage = _usage_dict(raw.usage)
                    choice = next((c for c in raw.choices or () if c.index == 0), None)
                    if choice is None:
                        continue
                    delta = choice.delta
                    content = delta.content if delta is not None and delta.content else None
                    if delta is not None and delta.tool_calls:
                        assembler.add(delta.tool_calls)
                    if content:
                        if observer is not None and not self.text:
                            try:
                                observer(time.monotonic() - t0)
                            except Exception:
                                logger.exception("first-token observer failed")
                        self.text += content
                    if choice.finish_reason:
                        self.finish_reason = choice.finish_reason
                    yield ChatChunk(content=content, finish_reason=choice.finish_reason)
            except openai.OpenAIError as err:
                raise LLMStreamError(
                    f"LLM stream from {where} broke off after {received} chunks: {_describe(err)}"
                ) from err
        finally:
            await stream.close()
        if self.finish_reason is None:
            raise LLMStreamError(
                f"LLM stream from {where} ended after {received} chunks "
                "before the model finished (no finish_reason)"
            )
        self.tool_calls = assembler.calls()
        if self.tool_calls:
            yield ChatChunk(tool_calls=list(self.tool_calls), finish_reason=self.finish_reason)


def _usage_dict(usage: Any) -> dict[str, Any]:
    return {
        "prompt_tokens": getattr(usage, "prompt_tokens", None),
        "completion_tokens": getattr(usage, "completion_tokens", None),
        "total_tokens": getattr(usage, "total_tokens", None),
    }


class OpenAIClient:
    """Chat completions from OpenAI or any OpenAI-compatible server.

    Unset arguments come from the environment: the key from `OPENAI_API_KEY`, the model from
    `ATOMS_LLM_MODEL` or `OPENAI_MODEL` (default `gpt-4o-mini`), the server from
    `ATOMS_LLM_BASE_URL` or `OPENAI_BASE_URL`. With a base URL and no key a placeholder key is
    sent, so local servers that ignore keys work. Without either, construction succeeds and
    the first request raises `LLMConfigError`.

    `temperature`, `max_tokens` and extra keyword arguments are defaults for every request;
    `chat(**params)` overrides them per request (None leaves a default alone).

    `aclose()` (or `async with`) closes its connections. One made in a node's `__init__`
    (`self.llm = OpenAIClient()`, as the SDK's examples do) is closed when that node stops,
    at the end of its call; close one you make elsewhere yourself.
    """

    def __init__(
        self,
        model: str | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        *,
        timeout: float | openai.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        **kwargs: Any,
    ) -> None:
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        self.model = model or _env("ATOMS_LLM_MODEL", "OPENAI_MODEL") or DEFAULT_MODEL
        self.temperature = temperature
        self.max_tokens = max_tokens
        self._extra_kwargs = kwargs
        url = base_url or _env("ATOMS_LLM_BASE_URL", "OPENAI_BASE_URL")
        key = api_key or _env("OPENAI_API_KEY")
        if key is None and url:
            key = PLACEHOLDER_API_KEY
        self._client: AsyncOpenAI | None = None
        if key is None:
            logger.warning(
                "OpenAIClient has no API key: set OPENAI_API_KEY, pass api_key, "
                "or point base_url (ATOMS_LLM_BASE_URL) at a local server"
            )
        else:
            self._client = AsyncOpenAI(
                api_key=key, base_url=url, timeout=timeout, max_retries=max_retries
            )
            adopt(self.aclose)  # made by a node's __init__: closed when that node stops
        self.base_url = str(self._client.base_url) if self._client else (url or "api.openai.com")

    def _api(self) -> AsyncOpenAI:
        if self._client is None:
            raise LLMConfigError(
                "no API key for the LLM: set OPENAI_API_KEY or pass api_key "
                "(or set base_url / ATOMS_LLM_BASE_URL for a local server)"
            )
        return self._client

    def _build_params(
        self,
        messages: list[dict[str, Any]],
        stream: bool,
        tools: list[dict[str, Any]] | None,
        overrides: dict[str, Any],
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "messages": messages, "stream": stream}
        if stream:
            params["stream_options"] = {"include_usage": True}
        if self.temperature is not None:
            params["temperature"] = self.temperature
        if self.max_tokens is not None:
            params["max_tokens"] = self.max_tokens
        if tools:
            params["tools"] = tools
        for source in (self._extra_kwargs, overrides):
            for key, value in source.items():
                if value is not None:
                    params[key] = value
        if not stream:
            params.pop("stream_options", None)
        return params

    def chat(
        self,
        messages: list[dict[str, Any]],
        stream: bool = False,
        tools: list[dict[str, Any]] | None = None,
        **params: Any,
    ) -> ChatStream | Awaitable[ChatResponse]:
        """Ask the model for the next message.

        With `stream=True`, a `ChatStream` of `ChatChunk` (iterate it, or await it and then
        iterate). Otherwise an awaitable of `ChatResponse`. `tools` are OpenAI tool schemas
        (e.g. `ToolRegistry.get_schemas()`); `params` go into the request (`tool_choice`,
        `temperature`, ...). Raises `LLMError` subclasses on failure.
        """
        request = self._build_params(messages, stream, tools, params)
        logger.debug(
            "chat request: model=%s messages=%d stream=%s tools=%d",
            request["model"], len(messages), stream, len(tools or ()),
        )
        if stream:
            return ChatStream(self, request)
        return self._complete(request)

    async def _complete(self, params: dict[str, Any]) -> ChatResponse:
        api = self._api()
        try:
            response = await api.chat.completions.create(**params)
        except openai.OpenAIError as err:
            raise _translate(err, self.base_url) from err
        usage = _usage_dict(response.usage) if response.usage is not None else None
        choice = next((c for c in response.choices or () if c.index == 0), None)
        if choice is None:
            return ChatResponse(content=None, tool_calls=[], usage=usage)
        message = choice.message
        calls: list[ToolCall] = []
        for call in message.tool_calls or ():
            function = getattr(call, "function", None)
            custom = getattr(call, "custom", None)
            if function is not None:
                calls.append(ToolCall(id=call.id, name=function.name, arguments=function.arguments))
            elif custom is not None:
                calls.append(ToolCall(id=call.id, name=custom.name, arguments=custom.input))
        return ChatResponse(
            content=message.content,
            tool_calls=calls,
            usage=usage,
            finish_reason=choice.finish_reason,
        )

    async def aclose(self) -> None:
        """Close the HTTP connections."""
        if self._client is not None:
            await self._client.close()

    async def __aenter__(self) -> OpenAIClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
