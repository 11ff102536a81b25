"""Who wants to know how an LLM client is doing, without importing one (the `openai`
package takes half a second to import).

`first_token_observer` is told the seconds from a streamed request to its first content.
Whoever runs the agent sets it, per call, for the tasks of that call's session (the gateway
does; its metrics and traces take it from there). None: nobody asked.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar

first_token_observer: ContextVar[Callable[[float], None] | None] = ContextVar(
    "first_token_observer", default=None)
