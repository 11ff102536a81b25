"""Node: one queue and one task per node; events flow parent -> children.

`system.control.interrupt` bypasses queues: it is handed to `process_event` at once,
and an interruptible node first cancels the event it is working on and drops its queue.
An exception in `process_event` becomes an `agent.error` event sent downstream; the
node keeps running.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import traceback
import weakref
from collections.abc import Callable
from typing import Any

from agent.events import SDKAgentErrorEvent, SDKEvent, SDKSystemControlInterruptEvent
from agent.ownership import Closer, close_owned, making
from runtime.tasks import cancel_and_wait

log = logging.getLogger(__name__)

_STOP = object()


class Node:
    """Base class for graph nodes. Override `process_event`; call `send_event` to emit.

    What a subclass's `__init__` makes that holds connections (an `OpenAIClient` as its
    `llm`) is closed when the node stops (`agent.ownership`); what it is given is not."""

    error_severity: str = "warning"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _owning(cls.__dict__["__init__"])  # type: ignore[method-assign]

    def __init__(self, name: str | None = None, is_interruptible: bool = False) -> None:
        self._owned: list[Closer] = self.__dict__.get("_owned", [])
        self.name = name or self.__class__.__name__
        self._is_interruptible = is_interruptible
        self._children: list[Node] = []
        # weak: a parent holds its children, and a child pointing back would make every
        # call's graph a reference cycle, freed only by a full garbage collection
        self._parents: list[weakref.ref[Node]] = []
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._running = False

    # -- graph ---------------------------------------------------------------------
    @property
    def is_interruptible(self) -> bool:
        return self._is_interruptible

    @property
    def children(self) -> list[Node]:
        return self._children

    @property
    def parents(self) -> list[Node]:
        return [p for ref in self._parents if (p := ref()) is not None]

    @property
    def has_parents(self) -> bool:
        return bool(self._parents)

    @property
    def has_children(self) -> bool:
        return bool(self._children)

    def add_child(self, child: Node) -> None:
        if child not in self._children:
            self._children.append(child)
        if self not in child.parents:
            child._parents.append(weakref.ref(self))

    def add_parent(self, parent: Node) -> None:
        parent.add_child(self)

    # -- user API ------------------------------------------------------------------
    async def process_event(self, event: SDKEvent) -> None:
        """Handle one event. The base does nothing; subclasses forward with `send_event`."""

    async def send_event(self, event: SDKEvent) -> None:
        """Send `event` to every child (interrupts bypass the children's queues)."""
        for child in self._children:
            await child.queue_event(event)

    async def queue_event(self, event: SDKEvent) -> None:
        """Deliver an event to this node: queued, or handled at once if it is an interrupt."""
        if isinstance(event, SDKSystemControlInterruptEvent):
            if self._is_interruptible:
                await self._drop_work()
            await self._run(event)
        else:
            self._queue.put_nowait(event)

    # -- lifecycle -----------------------------------------------------------------
    async def start(self, init_event: Any = None, task_manager: Any = None) -> None:
        """Start the node's task. `init_event`/`task_manager` are accepted for compatibility."""
        if self._running:
            return
        self._running = True
        self._task = asyncio.create_task(self._loop(), name=f"node:{self.name}")

    async def stop(self) -> None:
        """Stop the node's task (queued events are dropped), then close what it made."""
        if self._running:
            self._running = False
            task, self._task = self._task, None
            if task is not None and not task.done():
                await cancel_and_wait(task)
            self._queue = asyncio.Queue()
        await close_owned(self._owned)

    # -- internals -----------------------------------------------------------------
    async def _drop_work(self) -> None:
        """Cancel the event in progress and drop everything queued."""
        task = self._task
        self._queue = asyncio.Queue()
        if task is None or task.done() or task is asyncio.current_task():
            return
        await cancel_and_wait(task)
        if self._running:
            self._task = asyncio.create_task(self._loop(), name=f"node:{self.name}")

    async def _loop(self) -> None:
        while True:
            event = await self._queue.get()
            await self._run(event)

    async def _run(self, event: SDKEvent) -> None:
        try:
            await self.process_event(event)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._report_error(exc, f"{type(exc).__name__} in {self.name}: {exc}")

    async def _report_error(self, exc: BaseException, message: str) -> None:
        log.exception("node %s failed: %s", self.name, message)
        err = SDKAgentErrorEvent(
            message=message,
            severity=self.error_severity,  # type: ignore[arg-type]
            payload={
                "node_name": self.name,
                "error_class": type(exc).__name__,
                "traceback": "".join(traceback.format_exception(exc)),
            },
        )
        try:
            await self.send_event(err)
        except Exception:
            log.exception("node %s could not report its error", self.name)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


def _owning(init: Callable[..., None]) -> Callable[..., None]:
    """`init`, run so that what it makes is adopted by the node being made."""

    @functools.wraps(init)
    def __init__(self: Node, *args: Any, **kwargs: Any) -> None:
        with making(self.__dict__.setdefault("_owned", [])):
            init(self, *args, **kwargs)

    return __init__

