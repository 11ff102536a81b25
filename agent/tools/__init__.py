"""Tools the model can call: `@function_tool` schemas from type hints and docstrings, and
`ToolRegistry`, which offers them to the model and runs its calls."""

from agent.clients.types import ToolCall, ToolResult
from agent.tools.decorator import (
    FunctionToolInfo,
    find_function_tools,
    function_tool,
    is_function_tool,
    make_tool_info,
)
from agent.tools.registry import ToolArgumentError, ToolRegistry, result_text
from agent.tools.schema import FunctionSchema, extract_function_schema, parse_docstring

__all__ = [
    "FunctionSchema",
    "FunctionToolInfo",
    "ToolArgumentError",
    "ToolCall",
    "ToolRegistry",
    "ToolResult",
    "extract_function_schema",
    "find_function_tools",
    "function_tool",
    "is_function_tool",
    "make_tool_info",
    "parse_docstring",
    "result_text",
]
