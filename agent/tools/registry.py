"""`ToolRegistry`: the tools an agent offers, their schemas, and running the model's calls.

Running a call never raises for the model's or the tool's mistakes: an unknown tool, arguments
that are not a JSON object, a missing or ill-typed argument, or an exception inside the tool
all come back as a `ToolResult` with `is_error=True` and a message the model can act on.
Arguments are validated and converted with pydantic against the tool's type hints (so an
`Enum` parameter receives the member, a model parameter an instance). Sync tools run on the
event loop, async tools are awaited; only cancellation propagates.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from agent.clients.types import ToolCall, ToolResult
from agent.tools.decorator import (
    FunctionToolInfo,
    find_function_tools,
    make_tool_info,
    tool_info,
)
from agent.tools.schema import resolved_hints, tool_parameters

logger = logging.getLogger(__name__)

_LENIENT = ConfigDict(coerce_numbers_to_str=True)


class ToolArgumentError(ValueError):
    """The model's arguments do not fit the tool."""


class _Binder:
    """Validates a JSON arguments object against one tool's parameters."""

    def __init__(self, func: Callable[..., Any]) -> None:
        self._params = tool_parameters(func)
        self._accepts_extra = any(
            p.kind is inspect.Parameter.VAR_KEYWORD
            for p in inspect.signature(func).parameters.values()
        )
        hints = resolved_hints(func)
        self._adapters: dict[str, TypeAdapter[Any]] = {}
        for param in self._params:
            hint = hints.get(param.name, inspect.Parameter.empty)
            if hint is inspect.Parameter.empty or hint is Any:
                continue
            try:
                self._adapters[param.name] = _adapter(hint)
            except Exception as err:  # a type pydantic cannot validate: pass values through
                logger.debug("no validator for %s: %s", param.name, err)

    def bind(self, arguments: Mapping[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        missing = [
            p.name for p in self._params
            if p.default is inspect.Parameter.empty and p.name not in arguments
        ]
        if missing:
            raise ToolArgumentError("missing required argument(s): " + ", ".join(missing))
        problems: list[str] = []
        for param in self._params:
            if param.name not in arguments:
                continue
            value = arguments[param.name]
            adapter = self._adapters.get(param.name)
            if adapter is not None:
                try:
                    value = adapter.validate_python(value)
                except ValidationError as err:
                    problems += [_describe_error(param.name, e) for e in err.errors()]
                    continue
            if param.kind is inspect.Parameter.POSITIONAL_ONLY:
                args.append(value)
            else:
                kwargs[param.name] = value
        if problems:
            raise ToolArgumentError("; ".join(problems))
        known = {p.name for p in self._params}
        extra = {k: v for k, v in arguments.items() if k not in known}
        if extra and self._accepts_extra:
            kwargs.update(extra)
        elif extra:
            logger.debug("ignoring unknown tool arguments: %s", sorted(extra))
        return args, kwargs


def _adapter(hint: Any) -> TypeAdapter[Any]:
    try:
        return TypeAdapter(hint, config=_LENIENT)
    except Exception:  # models carry their own config, which TypeAdapter may not override
        return TypeAdapter(hint)


def _describe_error(name: str, error: Any) -> str:
    loc = ".".join(str(part) for part in (name, *error.get("loc", ())))
    return f"{loc}: {error.get('msg', 'invalid value')}"


def result_text(value: Any) -> str:
    """A tool's return value as text for the model: strings as they are, the rest as JSON
    (models, dataclasses and enums included; anything else by its `str`)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(to_jsonable_python(value, fallback=str))
    except (TypeError, ValueError):
        return str(value)


def _as_tool_call(call: ToolCall | Mapping[str, Any]) -> ToolCall:
    if isinstance(call, ToolCall):
        return call
    function = call.get("function") or {}
    arguments = function.get("arguments", call.get("arguments", ""))
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments)
    return ToolCall(
        id=str(call.get("id") or ""),
        name=str(function.get("name") or call.get("name") or ""),
        arguments=arguments,
    )


class ToolRegistry:
    """Named tools: register or discover them, hand their schemas to the model, run calls."""

    def __init__(self) -> None:
        self._tools: dict[str, FunctionToolInfo] = {}
        self._binders: dict[str, _Binder] = {}

    def register(
        self, func_or_info: Callable[..., Any] | FunctionToolInfo
    ) -> Callable[..., Any] | FunctionToolInfo:
        """Add a tool (returned, so this also works as a decorator).

        Takes a `@function_tool` function or bound method, a `FunctionToolInfo`, or a plain
        callable (its schema is derived as `@function_tool` would, without changing it).
        A tool with the same name replaces the earlier one.
        """
        if isinstance(func_or_info, FunctionToolInfo):
            info = func_or_info
        else:
            found = tool_info(func_or_info)
            if found is None:
                if not callable(func_or_info):
                    raise TypeError(f"cannot register {func_or_info!r}: not callable")
                found = make_tool_info(func_or_info)
            info = found
            if info.function is not func_or_info:
                info = dataclasses.replace(info, function=func_or_info)
        old = self._tools.get(info.name)
        if old is not None and old.function != info.function:
            logger.warning("tool %r registered again; the new one replaces the old", info.name)
        self._tools[info.name] = info
        self._binders[info.name] = _Binder(info.function)
        logger.debug("registered tool %s", info.name)
        return func_or_info

    def discover(self, obj: Any) -> list[str]:
        """Register every `@function_tool` method of `obj`; returns their names."""
        names = []
        for member in find_function_tools(obj):
            self.register(member)
            info = tool_info(member)
            if info is not None:
                names.append(info.name)
        return names

    def unregister(self, name: str) -> None:
        self._tools.pop(name, None)
        self._binders.pop(name, None)

    def get(self, name: str) -> FunctionToolInfo | None:
        return self._tools.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def get_schemas(self) -> list[dict[str, Any]]:
        """OpenAI tool definitions for every registered tool (`chat(tools=...)`)."""
        return [
            {"type": "function", "function": info.schema.to_dict()}
            for info in self._tools.values()
        ]

    async def execute(
        self,
        tool_calls: Iterable[ToolCall | Mapping[str, Any]],
        context: Any = None,
        parallel: bool = True,
    ) -> list[ToolResult]:
        """Run the model's tool calls; one result per call, in the calls' order.

        Calls may be `ToolCall`s or OpenAI-format dicts. `context` is accepted for
        compatibility with the published SDK and, as there, not passed to tools.
        """
        calls = [_as_tool_call(c) for c in tool_calls]
        if parallel and len(calls) > 1:
            return list(await asyncio.gather(*(self._run(c) for c in calls)))
        return [await self._run(c) for c in calls]

    async def call_tool(
        self, name: str, arguments: str | Mapping[str, Any] | None = None, tool_call_id: str = ""
    ) -> ToolResult:
        """Run one tool by name with arguments as JSON text or a dict."""
        if arguments is None:
            text = ""
        elif isinstance(arguments, str):
            text = arguments
        else:
            text = json.dumps(dict(arguments), default=str)
        return await self._run(ToolCall(id=tool_call_id, name=name, arguments=text))

    async def _run(self, call: ToolCall) -> ToolResult:
        def error(message: str) -> ToolResult:
            logger.info("tool call %s failed: %s", call.name, message)
            return ToolResult(call.id, call.name, f"Error: {message}", is_error=True)

        info = self._tools.get(call.name)
        if info is None:
            available = ", ".join(sorted(self._tools)) or "none"
            return error(f"unknown tool {call.name!r}; available tools: {available}")
        try:
            arguments = call.parsed_arguments()
        except ValueError as err:
            return error(f"arguments for {call.name!r} are not a valid JSON object: {err}")
        try:
            args, kwargs = self._binders[call.name].bind(arguments)
        except ToolArgumentError as err:
            return error(f"invalid arguments for {call.name!r}: {err}")
        try:
            value = info.function(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
        except Exception as err:
            logger.warning("tool %s raised", call.name, exc_info=True)
            return ToolResult(
                call.id, call.name, f"Error: {type(err).__name__}: {err}", is_error=True
            )
        return ToolResult(call.id, call.name, result_text(value))

