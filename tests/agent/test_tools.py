"""@function_tool schemas and ToolRegistry execution, compared where it makes sense with the
published SDK's decorator, and one tool round trip through the local OpenAI-compatible server."""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field
from smallestai.atoms.agent.tools import function_tool as published_function_tool

from agent.clients import OpenAIClient, ToolCall, assistant_tool_calls_message
from agent.tools import (
    FunctionToolInfo,
    ToolRegistry,
    find_function_tools,
    function_tool,
    is_function_tool,
    parse_docstring,
)
from tests.kit.servers.openai_server import FakeOpenAIServer, Reply, ToolCallSpec

pytestmark = pytest.mark.timeout(20)


class Unit(enum.Enum):
    CELSIUS = "celsius"
    FAHRENHEIT = "fahrenheit"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Street(BaseModel):
    name: str
    number: int


class Address(BaseModel):
    street: Street
    city: str


def schema_of(func) -> dict[str, Any]:
    return func.__tool_info__.schema.to_dict()


def params_of(func) -> dict[str, Any]:
    return schema_of(func)["parameters"]


# --- schemas ---------------------------------------------------------------------------


def test_no_arguments():
    @function_tool
    def hang_up() -> str:
        """End the call politely."""
        return "bye"

    assert schema_of(hang_up) == {
        "name": "hang_up",
        "description": "End the call politely.",
        "parameters": {"type": "object", "properties": {}, "required": []},
    }
    assert hang_up() == "bye"  # still an ordinary function


def test_primitive_types_defaults_and_required():
    @function_tool
    def book(name: str, seats: int, budget: float, vip: bool = False, note: str = "none"):
        """Book a table."""

    params = params_of(book)
    assert params["properties"] == {
        "name": {"type": "string"},
        "seats": {"type": "integer"},
        "budget": {"type": "number"},
        "vip": {"type": "boolean", "default": False},
        "note": {"type": "string", "default": "none"},
    }
    assert params["required"] == ["name", "seats", "budget"]


def test_containers_optional_literal_enum_annotated():
    @function_tool
    def search(
        words: list[str],
        ids: list[int] | None = None,
        filters: dict[str, int] | None = None,
        meta: dict | None = None,
        mode: Literal["fast", "exact"] = "fast",
        unit: Unit = Unit.CELSIUS,
        priority: Optional[Priority] = None,  # noqa: UP045 - the typing spelling on purpose
        limit: Annotated[int, Field(description="Most results to return", ge=1)] = 10,
        label: Annotated[str, "A label"] = "",
        either: int | str = 0,
    ):
        """Search."""

    props = params_of(search)["properties"]
    assert props["words"] == {"type": "array", "items": {"type": "string"}}
    assert props["ids"] == {"type": "array", "items": {"type": "integer"}}
    assert props["filters"] == {"type": "object", "additionalProperties": {"type": "integer"}}
    assert props["meta"] == {"type": "object"}
    assert props["mode"] == {"type": "string", "enum": ["fast", "exact"], "default": "fast"}
    assert props["unit"] == {"type": "string", "enum": ["celsius", "fahrenheit"],
                             "default": "celsius"}
    assert props["priority"] == {"type": "integer", "enum": [1, 2]}
    assert props["limit"] == {"type": "integer", "description": "Most results to return",
                              "default": 10}
    assert props["label"] == {"type": "string", "description": "A label", "default": ""}
    assert props["either"] == {"anyOf": [{"type": "integer"}, {"type": "string"}], "default": 0}
    assert params_of(search)["required"] == ["words"]


def test_pydantic_model_parameter_hoists_definitions():
    @function_tool
    def ship(to: Address, express: bool = False):
        """Ship a parcel."""

    params = params_of(ship)
    to = params["properties"]["to"]
    assert to["type"] == "object" and to["required"] == ["street", "city"]
    # nested models are referenced from the parameters' own $defs
    assert to["properties"]["street"] == {"$ref": "#/$defs/Street"}
    assert params["$defs"]["Street"]["properties"]["number"]["type"] == "integer"
    assert params["required"] == ["to"]


def test_google_docstring():
    @function_tool
    def transfer(number: str, reason: str = "", warm: bool = True):
        """Transfer the caller to a human.

        Use only when the caller asks for a person.

        Args:
            number (str): Phone number in E.164 form,
                for example +14155550100.
            reason: Why the caller wants a human.
            warm: Introduce the caller first.

        Returns:
            Nothing useful.
        """

    schema = schema_of(transfer)
    assert schema["description"] == (
        "Transfer the caller to a human. Use only when the caller asks for a person."
    )
    props = schema["parameters"]["properties"]
    assert props["number"]["description"] == (
        "Phone number in E.164 form, for example +14155550100."
    )
    assert props["reason"]["description"] == "Why the caller wants a human."
    assert props["warm"]["description"] == "Introduce the caller first."


def test_numpy_and_sphinx_docstrings():
    numpy_doc = parse_docstring(
        """Look up an order.

        Parameters
        ----------
        order_id : str
            The order number
            printed on the receipt.
        verbose : bool, optional
            Include line items.

        Returns
        -------
        dict
        """
    )
    assert numpy_doc.description == "Look up an order."
    assert numpy_doc.params == {
        "order_id": "The order number printed on the receipt.",
        "verbose": "Include line items.",
    }
    sphinx_doc = parse_docstring(
        """Cancel an order.

        :param order_id: The order number.
        :param str reason: Why.
        :returns: nothing
        """
    )
    assert sphinx_doc.description == "Cancel an order."
    assert sphinx_doc.params == {"order_id": "The order number.", "reason": "Why."}
    assert parse_docstring(None).description == ""


def test_decorator_forms_and_overrides():
    @function_tool()
    def plain(x: int):
        """Plain."""

    @function_tool(name="lookup_customer", description="Find a customer by phone.")
    async def find(phone: str):
        """Ignored description."""

    assert schema_of(plain)["name"] == "plain"
    assert schema_of(find)["name"] == "lookup_customer"
    assert schema_of(find)["description"] == "Find a customer by phone."
    assert is_function_tool(plain) and is_function_tool(find)
    assert not is_function_tool(lambda: None)
    assert isinstance(find.__tool_info__, FunctionToolInfo)


def test_invalid_tool_name_is_rejected_at_decoration():
    with pytest.raises(ValueError, match="tool name"):
        function_tool(name="has spaces")(lambda: None)


def test_methods_skip_self():
    class Agent:
        @function_tool
        def check(self, account: str) -> str:
            """Check an account.

            Args:
                account: Account id.
            """
            return account

    params = params_of(Agent.check)
    assert list(params["properties"]) == ["account"]
    assert params["required"] == ["account"]


# --- agreement with the published decorator -------------------------------------------


def weather(city: str, detailed: bool = False, radius_km: float = 10.0):
    """Get the current weather.

    Args:
        city: City name, e.g. Paris.
        detailed: Include wind and humidity.
        radius_km: Search radius around the city.
    """


def send_sms(number: str, text: str, options: dict | None = None):
    """Send a text message to the caller."""


def no_args():
    """Say the opening hours."""


def counter(step: int, names: list[str]):
    """Count.

    Args:
        step: How far to count.
        names: Who counts.
    """


# (function, what the published schema gets wrong for it, and what it should be)
AGREEMENT = [
    (weather, {}),
    (send_sms, {"options": {"type": "object"}}),  # published: Optional[dict] -> "string"
    (no_args, {}),
    (counter, {"step": {"type": "integer"},  # published: int -> "number"
               "names": {"type": "array", "items": {"type": "string"}}}),  # published: no items
]


@pytest.mark.parametrize(("func", "published_wrong"), AGREEMENT,
                         ids=[f.__name__ for f, _ in AGREEMENT])
def test_agrees_with_published_decorator(func, published_wrong):
    ours = function_tool(_copy(func)).__tool_info__.schema.to_dict()
    theirs = published_function_tool(_copy(func)).__tool_info__.schema.to_dict()
    assert ours["name"] == theirs["name"] == func.__name__
    assert ours["description"] == theirs["description"]
    assert ours["parameters"]["type"] == theirs["parameters"]["type"] == "object"
    assert ours["parameters"]["required"] == theirs["parameters"]["required"]
    assert list(ours["parameters"]["properties"]) == list(theirs["parameters"]["properties"])
    for name, their_prop in theirs["parameters"]["properties"].items():
        our_prop = ours["parameters"]["properties"][name]
        assert our_prop.get("description", "") == their_prop["description"]
        if name in published_wrong:
            for key, value in published_wrong[name].items():
                assert our_prop[key] == value
        else:
            assert our_prop["type"] == their_prop["type"]


def _copy(func):
    """A fresh function object, so the two decorators do not share `__tool_info__`."""

    def clone(*args, **kwargs):
        return func(*args, **kwargs)

    clone.__name__ = func.__name__
    clone.__doc__ = func.__doc__
    clone.__annotations__ = dict(func.__annotations__)
    clone.__wrapped__ = func
    clone.__module__ = func.__module__
    clone.__signature__ = inspect.signature(func)
    return clone


# --- registry ---------------------------------------------------------------------------


class Store:
    """An object with tools, state and a property that must not be evaluated."""

    def __init__(self) -> None:
        self.stock = {"apple": 3}
        self.log: list[str] = []

    @property
    def explosive(self) -> int:
        raise RuntimeError("properties must not be touched by discovery")

    @function_tool
    def count(self, item: str) -> int:
        """How many of an item are in stock."""
        self.log.append(f"count {item}")
        return self.stock.get(item, 0)

    @function_tool(name="restock")
    async def add_stock(self, item: str, amount: int = 1) -> dict:
        """Add items to stock."""
        await asyncio.sleep(0)
        self.stock[item] = self.stock.get(item, 0) + amount
        return {"item": item, "stock": self.stock[item]}

    @staticmethod
    @function_tool
    def opening_hours() -> str:
        """Opening hours."""
        return "9-17"

    def not_a_tool(self) -> None:
        """Plain method."""


async def test_discover_binds_methods_and_skips_the_rest():
    store = Store()
    registry = ToolRegistry()
    names = registry.discover(store)
    assert sorted(names) == ["count", "opening_hours", "restock"]
    assert len(find_function_tools(store)) == 3
    schemas = {s["function"]["name"]: s for s in registry.get_schemas()}
    assert set(schemas) == {"count", "restock", "opening_hours"}
    assert all(s["type"] == "function" for s in schemas.values())
    assert schemas["restock"]["function"]["parameters"]["required"] == ["item"]

    result = await registry.call_tool("count", {"item": "apple"}, "call_1")
    assert (result.content, result.is_error, result.tool_call_id) == ("3", False, "call_1")
    result = await registry.call_tool("restock", '{"item": "pear", "amount": 4}')
    assert json.loads(result.content) == {"item": "pear", "stock": 4}
    assert store.stock["pear"] == 4 and store.log == ["count apple"]
    assert (await registry.call_tool("opening_hours")).content == "9-17"


async def test_execute_runs_sync_and_async_tools_in_call_order():
    order: list[str] = []
    gate = asyncio.Event()

    @function_tool
    async def slow(tag: str) -> str:
        """Waits for fast to run (only possible when calls run concurrently)."""
        await gate.wait()
        order.append(f"slow {tag}")
        return tag.upper()

    @function_tool
    def fast(tag: str) -> str:
        """Runs at once."""
        order.append(f"fast {tag}")
        gate.set()
        return tag

    registry = ToolRegistry()
    registry.register(slow)
    registry.register(fast)
    calls = [ToolCall("c1", "slow", '{"tag": "a"}'),
             {"id": "c2", "type": "function", "function": {"name": "fast", "arguments": {"tag": "b"}}}]
    results = await registry.execute(calls)
    assert [(r.tool_call_id, r.name, r.content) for r in results] == [
        ("c1", "slow", "A"), ("c2", "fast", "b")]
    assert order == ["fast b", "slow a"]

    order.clear()
    results = await registry.execute([ToolCall("c3", "fast", '{"tag": "x"}'),
                                      ToolCall("c4", "slow", '{"tag": "y"}')], parallel=False)
    assert order == ["fast x", "slow y"]
    assert results[1].to_message() == {"role": "tool", "tool_call_id": "c4", "name": "slow",
                                       "content": "Y"}


async def test_arguments_are_validated_and_converted():
    seen: dict[str, Any] = {}

    @function_tool
    def configure(unit: Unit, count: int, address: Address, tags: list[str] | None = None):
        """Configure."""
        seen.update(unit=unit, count=count, address=address, tags=tags)
        return None

    registry = ToolRegistry()
    registry.register(configure)
    result = await registry.call_tool("configure", {
        "unit": "fahrenheit", "count": "7", "tags": ["a", 5], "unexpected": 1,
        "address": {"street": {"name": "Main", "number": 1}, "city": "Oslo"},
    })
    assert not result.is_error, result.content
    assert result.content == "null"
    assert seen["unit"] is Unit.FAHRENHEIT
    assert seen["count"] == 7
    assert seen["tags"] == ["a", "5"]
    assert isinstance(seen["address"], Address) and seen["address"].street.number == 1


async def test_result_serialisation():
    @dataclass
    class Slot:
        day: str
        hour: int

    @function_tool
    def slots() -> list:
        """Free slots."""
        return [Slot("mon", 9)]

    @function_tool
    def model() -> Street:
        """A model."""
        return Street(name="Elm", number=4)

    registry = ToolRegistry()
    registry.register(slots)
    registry.register(model)
    assert json.loads((await registry.call_tool("slots")).content) == [{"day": "mon", "hour": 9}]
    assert json.loads((await registry.call_tool("model")).content) == {"name": "Elm",
                                                                       "number": 4}


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("nope", "{}", "unknown tool 'nope'; available tools: divide"),
        ("divide", "{not json", "not a valid JSON object"),
        ("divide", "[1, 2]", "not a valid JSON object"),
        ("divide", '{"a": 1}', "missing required argument(s): b"),
        ("divide", '{"a": "one", "b": 2}', "a: Input should be a valid integer"),
        ("divide", '{"a": 1, "b": 0}', "ZeroDivisionError: division by zero"),
    ],
)
async def test_errors_come_back_as_results(name, arguments, expected):
    @function_tool
    def divide(a: int, b: int) -> float:
        """Divide a by b."""
        return a / b

    registry = ToolRegistry()
    registry.register(divide)
    (result,) = await registry.execute([ToolCall("call_x", name, arguments)])
    assert result.is_error
    assert result.tool_call_id == "call_x" and result.name == name
    assert result.content.startswith("Error: ")
    assert expected in result.content


async def test_async_tool_exception_and_parallel_neighbours():
    @function_tool
    async def broken() -> str:
        """Always fails."""
        await asyncio.sleep(0)
        raise RuntimeError("backend down")

    @function_tool
    async def fine() -> str:
        """Works."""
        return "ok"

    registry = ToolRegistry()
    registry.register(broken)
    registry.register(fine)
    results = await registry.execute([ToolCall("1", "broken", ""), ToolCall("2", "fine", "")])
    assert [(r.is_error, r.content) for r in results] == [
        (True, "Error: RuntimeError: backend down"), (False, "ok")]


async def test_cancellation_propagates():
    started = asyncio.Event()

    @function_tool
    async def forever() -> None:
        """Never returns."""
        started.set()
        await asyncio.Event().wait()

    registry = ToolRegistry()
    registry.register(forever)
    task = asyncio.create_task(registry.call_tool("forever"))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_register_plain_function_and_replace():
    def greet(name: str) -> str:
        """Greet someone."""
        return f"hi {name}"

    registry = ToolRegistry()
    assert registry.register(greet) is greet
    assert not is_function_tool(greet)  # the plain function is left untouched
    assert "greet" in registry and len(registry) == 1
    assert (await registry.call_tool("greet", {"name": "Ann"})).content == "hi Ann"

    @function_tool(name="greet")
    def greet_loudly(name: str) -> str:
        """Greet loudly."""
        return f"HI {name.upper()}"

    registry.register(greet_loudly)
    assert registry.names == ["greet"]
    assert (await registry.call_tool("greet", {"name": "Ann"})).content == "HI ANN"
    registry.unregister("greet")
    assert len(registry) == 0
    with pytest.raises(TypeError):
        registry.register(42)  # type: ignore[arg-type]


# --- a tool round trip through the server -------------------------------------------------


async def test_tool_loop_through_the_server():
    @function_tool
    def get_weather(city: str) -> dict:
        """Weather for a city.

        Args:
            city: The city.
        """
        return {"city": city, "sky": "clear"}

    registry = ToolRegistry()
    registry.register(get_weather)
    async with FakeOpenAIServer() as server:
        server.add(
            Reply.tools(ToolCallSpec("get_weather", {"city": "Paris"}, id="call_w"), chunk_size=2),
            Reply.text("It is clear in Paris."),
        )
        client = OpenAIClient(base_url=server.url, max_retries=0)
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
        stream = client.chat(messages, stream=True, tools=registry.get_schemas())
        async for _ in stream:
            pass
        results = await registry.execute(stream.tool_calls)
        messages.append(assistant_tool_calls_message(stream.tool_calls))
        messages += [r.to_message() for r in results]
        chunks = [c.content async for c in client.chat(messages, stream=True,
                                                       tools=registry.get_schemas()) if c.content]
        await client.aclose()

    assert "".join(chunks) == "It is clear in Paris."
    first, second = server.requests
    assert first.tools == registry.get_schemas()
    assert first.tools[0]["function"]["parameters"]["properties"]["city"] == {
        "type": "string", "description": "The city."}
    assert second.messages[1]["tool_calls"][0]["id"] == "call_w"
    assert second.messages[2] == {"role": "tool", "tool_call_id": "call_w",
                                  "name": "get_weather",
                                  "content": json.dumps({"city": "Paris", "sky": "clear"})}


# --- fuzz ---------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_docstring_parser_never_raises(text):
    doc = parse_docstring(text)
    assert isinstance(doc.description, str)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in doc.params.items())


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(["divide", "other"]),
       arguments=st.one_of(st.text(), st.dictionaries(st.text(max_size=5), st.one_of(
           st.none(), st.integers(), st.text(max_size=5), st.floats(allow_nan=False)))))
async def test_any_model_input_gives_a_result(name, arguments):
    @function_tool
    def divide(a: int, b: int = 1) -> float:
        """Divide."""
        return a / b

    registry = ToolRegistry()
    registry.register(divide)
    result = await registry.call_tool(name, arguments, "id")
    assert isinstance(result.content, str) and result.tool_call_id == "id"
    if name == "other":
        assert result.is_error
