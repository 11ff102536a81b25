"""`@function_tool`: mark a function or method as a tool the model may call.

Usable bare (`@function_tool`) or with overrides (`@function_tool(name=..., description=...)`),
on sync and async functions and methods. The function itself is returned unchanged, carrying
its `FunctionToolInfo` in `__tool_info__`, so it can still be called directly.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from agent.tools.schema import FunctionSchema, extract_function_schema

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class FunctionToolInfo:
    """What the registry needs to offer and run a tool."""

    name: str
    description: str
    schema: FunctionSchema
    function: Callable[..., Any]


def make_tool_info(
    func: Callable[..., Any], name: str | None = None, description: str | None = None
) -> FunctionToolInfo:
    """Tool metadata for `func`, without marking it (what `@function_tool` attaches)."""
    schema = extract_function_schema(func, name=name, description=description)
    return FunctionToolInfo(
        name=schema.name, description=schema.description, schema=schema, function=func
    )


@overload
def function_tool(name: F) -> F: ...


@overload
def function_tool(
    name: str | None = None, description: str | None = None
) -> Callable[[F], F]: ...


def function_tool(
    name: str | Callable[..., Any] | None = None,
    description: str | None = None,
) -> Any:
    """Decorate a function as a tool; its schema comes from type hints and the docstring.

    Raises `ValueError` at decoration time when the tool name is not one OpenAI accepts.
    """

    def decorate(func: F) -> F:
        info = make_tool_info(func, name=tool_name, description=description)
        func.__tool_info__ = info  # type: ignore[attr-defined]
        return func

    if callable(name):
        tool_name = None
        return decorate(name)  # type: ignore[arg-type]
    tool_name = name
    return decorate


def tool_info(obj: Any) -> FunctionToolInfo | None:
    """The tool metadata of a decorated function, method, staticmethod or classmethod."""
    info = getattr(obj, "__tool_info__", None)
    if info is None and isinstance(obj, (staticmethod, classmethod)):
        info = getattr(obj.__func__, "__tool_info__", None)
    return info if isinstance(info, FunctionToolInfo) else None


def is_function_tool(func: Any) -> bool:
    """True when `func` was decorated with `@function_tool`."""
    return tool_info(func) is not None


def find_function_tools(obj: Any) -> list[Callable[..., Any]]:
    """The decorated callables of an object (bound methods for an instance), sorted by name.

    Attributes are inspected statically first, so properties are never evaluated.
    """
    found: list[Callable[..., Any]] = []
    for attr in dir(obj):
        try:
            static = inspect.getattr_static(obj, attr)
        except AttributeError:
            continue
        if tool_info(static) is None:
            continue
        member = getattr(obj, attr)
        if callable(member):
            found.append(member)
    return found
