"""What a node makes while it is being made is the node's: it closes it when it stops.

An agent written as the SDK's examples show, `self.llm = OpenAIClient(...)` in its
`__init__`, gets one client per call (the setup handler makes a node per call), and
nothing else knows of that client: so the node closes it in `stop()`, when its session
ends. A client made anywhere else (at import, say, and shared by every call) and passed
in is its maker's to close; the node leaves it alone.

`Node` runs each subclass's `__init__` inside `making(...)`; a resource that holds
connections calls `adopt(its_aclose)` when it is made.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger(__name__)

Closer = Callable[[], Awaitable[object]]

_being_made: ContextVar[list[Closer] | None] = ContextVar("agent_node_being_made",
                                                          default=None)


@contextmanager
def making(owned: list[Closer]) -> Iterator[None]:
    """While a node's `__init__` runs: what is adopted goes into `owned`."""
    token = _being_made.set(owned)
    try:
        yield
    finally:
        _being_made.reset(token)


def adopt(aclose: Closer) -> bool:
    """A resource is being made: if a node is being made too, that node will call `aclose`
    when it stops. True when a node took it."""
    owned = _being_made.get()
    if owned is None:
        return False
    owned.append(aclose)
    return True


async def close_owned(owned: list[Closer]) -> None:
    """Close what a node owns, newest first; one failing does not stop the rest."""
    while owned:
        aclose = owned.pop()
        try:
            await aclose()
        except Exception:
            log.exception("closing %r failed", aclose)
