"""JSON schemas for tool functions, from their type hints and docstrings.

Types map to JSON schema as a model expects them: `str` string, `int` integer, `float`
number, `bool` boolean, `list[X]` array of X, `dict[str, X]` object, `Optional[X]` X,
`Literal[...]` and `Enum` an `enum` of their values, `Annotated[X, Field(description=...)]`
(or a plain string) a described X, pydantic models and dataclasses their pydantic schema.
Parameters without a default are required. The docstring's text before its first section is
the tool's description; parameter descriptions come from a Google-style `Args:` section,
a NumPy-style `Parameters` section or Sphinx `:param name:` fields.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import json
import logging
import re
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

logger = logging.getLogger(__name__)

TOOL_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SKIPPED_FIRST = ("self", "cls")
_PRIMITIVES: dict[Any, str] = {str: "string", bool: "boolean", int: "integer", float: "number"}
_GOOGLE_HEADER = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns?|Yields?|"
    r"Raises|Examples?|Notes?|Attributes|Warnings?|See Also|Todo|References)\s*:\s*$",
    re.IGNORECASE,
)
_PARAM_SECTIONS = {"args", "arguments", "parameters", "params", "keyword args", "keyword arguments"}
_GOOGLE_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_NUMPY_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?::\s*.*)?$")
_SPHINX_PARAM = re.compile(r"^:param\s+(?:[^:]*\s)?(\w+)\s*:\s*(.*)$")
_SPHINX_FIELD = re.compile(r"^:\w+")


class FunctionSchema(BaseModel):
    """A tool's name, description and JSON schema of its parameters."""

    name: str
    description: str
    parameters: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The `function` part of an OpenAI tool definition."""
        return {"name": self.name, "description": self.description, "parameters": self.parameters}


@dataclasses.dataclass
class Docstring:
    description: str
    params: dict[str, str]


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _join(lines: list[str]) -> str:
    return " ".join(part.strip() for part in lines if part.strip())


def _parse_entries(lines: list[str], entry: re.Pattern[str]) -> dict[str, str]:
    """Entries at the section's base indentation; deeper lines continue the last entry."""
    body = [ln for ln in lines if ln.strip()]
    if not body:
        return {}
    base = min(_indent(ln) for ln in body)
    params: dict[str, list[str]] = {}
    current: str | None = None
    for line in body:
        match = entry.match(line.strip()) if _indent(line) == base else None
        if match:
            current = match.group(1)
            first = match.group(2) if match.lastindex and match.lastindex >= 2 else None
            params[current] = [first] if first else []
        elif current is not None:
            params[current].append(line)
    return {name: _join(text) for name, text in params.items()}


def parse_docstring(docstring: str | None) -> Docstring:
    """Split a docstring into the tool description and per-parameter descriptions."""
    if not docstring or not docstring.strip():
        return Docstring("", {})
    lines = inspect.cleandoc(docstring).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    section_lines: list[str] = []
    style = "google"

    def flush() -> None:
        if section in _PARAM_SECTIONS:
            entry = _GOOGLE_ENTRY if style == "google" else _NUMPY_ENTRY
            params.update(_parse_entries(section_lines, entry))

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        next_line = lines[i + 1].strip() if i + 1 < len(lines) else ""
        sphinx = _SPHINX_PARAM.match(stripped)
        if _indent(line) == 0 and _GOOGLE_HEADER.match(stripped):
            flush()
            section, section_lines, style = stripped.rstrip(":").strip().lower(), [], "google"
        elif (_indent(line) == 0 and stripped and next_line and set(next_line) == {"-"}
              and len(next_line) >= 3):
            flush()
            section, section_lines, style = stripped.lower(), [], "numpy"
            i += 1
        elif sphinx:
            params[sphinx.group(1)] = sphinx.group(2).strip()
        elif _SPHINX_FIELD.match(stripped):
            pass
        elif section is None:
            description.append(line)
        else:
            section_lines.append(line)
        i += 1
    flush()
    return Docstring(_join(description), params)


def _enum_schema(values: Sequence[Any]) -> dict[str, Any]:
    kinds = {type(v) for v in values}
    schema: dict[str, Any] = {}
    if len(kinds) == 1:
        kind = next(iter(kinds))
        for base, name in _PRIMITIVES.items():
            if issubclass(kind, base):
                schema["type"] = name
                break
    schema["enum"] = list(values)
    return schema


def _pydantic_schema(hint: Any, defs: dict[str, Any]) -> dict[str, Any]:
    schema = TypeAdapter(hint).json_schema(ref_template="#/$defs/{model}")
    defs.update(schema.pop("$defs", {}))
    return schema


def type_schema(hint: Any, defs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON schema of one type hint (definitions of nested models go into `defs`)."""
    defs = {} if defs is None else defs
    if hint is inspect.Parameter.empty or hint is Any:
        return {"type": "string"}
    if hint is None or hint is type(None):
        return {"type": "null"}
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin is typing.Annotated:
        schema = dict(type_schema(args[0], defs))
        for meta in args[1:]:
            if isinstance(meta, FieldInfo) and meta.description:
                schema["description"] = meta.description
            elif isinstance(meta, str):
                schema["description"] = meta
        return schema
    if origin is typing.Union or origin is types.UnionType:
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return type_schema(options[0], defs)
        return {"anyOf": [type_schema(a, defs) for a in options]}
    if origin is typing.Literal:
        return _enum_schema(args)
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _enum_schema([member.value for member in hint])
    if hint in _PRIMITIVES:
        return {"type": _PRIMITIVES[hint]}
    if hint is bytes:
        return {"type": "string"}
    if origin is tuple or hint is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return {"type": "array", "items": type_schema(args[0], defs)}
        return {"type": "array"}
    container = origin if origin is not None else hint
    if isinstance(container, type) and issubclass(container, (str, bytes)):
        return {"type": "string"}
    if isinstance(container, type) and issubclass(container, Mapping):
        schema = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            schema["additionalProperties"] = type_schema(args[1], defs)
        return schema
    if isinstance(container, type) and issubclass(container, (Sequence, set, frozenset)):
        schema = {"type": "array"}
        if args and args[0] is not Any:
            schema["items"] = type_schema(args[0], defs)
        return schema
    try:
        return _pydantic_schema(hint, defs)
    except Exception as err:  # any type pydantic cannot describe
        logger.warning("no JSON schema for type %r (%s); describing it as a string", hint, err)
        return {"type": "string"}


def _jsonable(value: Any) -> tuple[bool, Any]:
    if isinstance(value, enum.Enum):
        value = value.value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False, None
    return True, value


def tool_parameters(func: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters the model fills: no leading self/cls, no *args or **kwargs."""
    params = list(inspect.signature(func).parameters.values())
    if params and params[0].name in _SKIPPED_FIRST and not inspect.ismethod(func):
        params = params[1:]
    return [
        p for p in params
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]


def resolved_hints(func: Callable[..., Any]) -> dict[str, Any]:
    """Type hints with forward references resolved; raw annotations where that fails."""
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception as err:  # unresolvable: keep importing
        logger.warning("cannot resolve type hints of %s (%s); using raw annotations",
                       getattr(func, "__qualname__", func), err)
        hints = {}
        for p in inspect.signature(func).parameters.values():
            annotation = p.annotation
            if isinstance(annotation, str):
                annotation = {"str": str, "int": int, "float": float, "bool": bool}.get(
                    annotation, inspect.Parameter.empty)
            hints[p.name] = annotation
        return hints


def extract_function_schema(
    func: Callable[..., Any],
    name: str | None = None,
    description: str | None = None,
) -> FunctionSchema:
    """Build the tool schema of `func`; `name` and `description` override the derived ones."""
    tool_name = name or getattr(func, "__name__", "")
    if not TOOL_NAME_RE.match(tool_name):
        raise ValueError(
            f"tool name {tool_name!r} is not valid: use 1-64 letters, digits, '_' or '-'"
        )
    doc = parse_docstring(inspect.getdoc(func))
    hints = resolved_hints(func)
    defs: dict[str, Any] = {}
    properties: dict[str, Any] = {}
    required: list[str] = []
    for param in tool_parameters(func):
        schema = dict(type_schema(hints.get(param.name, inspect.Parameter.empty), defs))
        if "description" not in schema and doc.params.get(param.name):
            schema["description"] = doc.params[param.name]
        if param.default is inspect.Parameter.empty:
            required.append(param.name)
        else:
            ok, value = _jsonable(param.default)
            if ok and value is not None:
                schema["default"] = value
        properties[param.name] = schema
    parameters: dict[str, Any] = {"type": "object", "properties": properties, "required": required}
    if defs:
        parameters["$defs"] = defs
    return FunctionSchema(
        name=tool_name,
        description=description if description is not None else doc.description,
        parameters=parameters,
    )

