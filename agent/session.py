"""AgentSession: one call's graph of nodes between an automatic Root and Sink.

Events from the caller enter at Root (`deliver`); whatever reaches Sink goes to the
output function set by the transport (`set_output`). Hooks registered with
`on_event(name)` run once per event, whichever way it flows: when it enters at Root,
or when it reaches Sink if it did not enter at Root (an event a node passes on to Sink
is not seen again). They run in their own tasks (never blocking the flow), and a hook
that raises is only logged.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import uuid
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from agent.events import (
    CallerContext,
    SDKAgentReadyEvent,
    SDKEvent,
    SDKSystemInitEvent,
    SDKSystemUserLeftEvent,
    SessionContext,
    canonical_type,
)
from agent.nodes.base import Node

log = logging.getLogger(__name__)

OutputFn = Callable[[SDKEvent], Awaitable[None]]
Hook = Callable[["AgentSession", SDKEvent], Any]
RECEIVED_HOOK = "on_event_received"  # the published SDK's hook: every event from the peer


class RootNode(Node):
    """Entry point: hands caller events straight to every node without parents (no queue)."""

    async def queue_event(self, event: SDKEvent) -> None:
        await self.send_event(event)


class SinkNode(Node):
    """Exit point: hands what reaches it straight to the session's output (no queue)."""

    def __init__(self, session: AgentSession) -> None:
        super().__init__("Sink")
        self._session = weakref.ref(session)  # the session owns its Sink: no cycle

    async def queue_event(self, event: SDKEvent) -> None:
        session = self._session()
        if session is not None:
            await session._emit(event)


class AgentSession:
    """A call's agent graph. Build it with `add_node`/`add_edge`, then `start()`."""

    def __init__(
        self,
        session_id: str | None = None,
        init_event: SDKSystemInitEvent | None = None,
        context: dict[str, Any] | None = None,
    ) -> None:
        self.session_id = session_id or f"session-{uuid.uuid4().hex[:12]}"
        self.name = f"Session-{self.session_id}"
        self._init_event = init_event or SDKSystemInitEvent()
        self.context: dict[str, Any] = dict(context or {})
        self.nodes: list[Node] = []
        self.edges: list[tuple[Node, Node]] = []
        self.root = RootNode("Root")
        self.sink = SinkNode(self)
        self._output: OutputFn | None = None
        self._hooks: dict[str, list[Hook]] = {}
        self._hook_tasks: set[asyncio.Task[Any]] = set()
        # events the hooks have seen, by identity (weak: an event is forgotten once the
        # graph drops it), so one that enters at Root and reaches Sink runs them once
        self._hooked: weakref.WeakValueDictionary[int, SDKEvent] = weakref.WeakValueDictionary()
        self._started = asyncio.Event()
        self._complete = asyncio.Event()
        self._locked = False
        self._closed = False

    # -- call information (published SDK names) ------------------------------------
    @property
    def session_context(self) -> SessionContext:
        return self._init_event.session_context

    @property
    def initial_variables(self) -> dict[str, Any]:
        return dict(self.session_context.initial_variables)

    @property
    def caller(self) -> CallerContext | None:
        return self.session_context.caller

    @property
    def init_event(self) -> SDKSystemInitEvent:
        return self._init_event

    @property
    def is_started(self) -> bool:
        return self._started.is_set()

    @property
    def is_complete(self) -> bool:
        return self._complete.is_set()

    # -- graph -----------------------------------------------------------------------
    def add_node(self, node: Node) -> None:
        self._check_unlocked()
        if node not in self.nodes:
            self.nodes.append(node)

    def add_edge(self, parent: Node, child: Node) -> None:
        """Events flow parent -> child. Unknown nodes are added."""
        self._check_unlocked()
        self.add_node(parent)
        self.add_node(child)
        self.edges.append((parent, child))

    def _check_unlocked(self) -> None:
        if self._locked:
            raise RuntimeError(f"{self.name}: the graph is locked once start() has run")

    def _find_cycle(self) -> list[Node] | None:
        children: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for parent, child in self.edges:
            children[parent].append(child)
        state: dict[Node, int] = {}  # 1 = on the current path, 2 = done
        for node in self.nodes:
            if node not in state and (found := _cycle_from(node, children, state, [])):
                return found
        return None

    async def start(self) -> None:
        """Validate and lock the graph, wire Root and Sink, start every node."""
        if self._locked:
            raise RuntimeError(f"{self.name}: start() was already called")
        cycle = self._find_cycle()
        if cycle:
            raise ValueError(f"graph has a cycle: {' -> '.join(n.name for n in cycle)}")
        self._locked = True
        for parent, child in self.edges:
            parent.add_child(child)
        for node in self.nodes:
            if not node.has_parents:
                self.root.add_child(node)
            if not node.has_children:
                node.add_child(self.sink)
        for node in self.nodes:
            await node.start(self._init_event, None)
        self._started.set()
        await self._emit(SDKAgentReadyEvent())

    async def wait_until_complete(self) -> None:
        """Return when the call has ended (`close`)."""
        await self._complete.wait()

    async def wait_until_started(self) -> None:
        await self._started.wait()

    # -- transport-facing API --------------------------------------------------------
    def set_output(self, fn: OutputFn | None) -> None:
        """Receive every event that reaches the Sink."""
        self._output = fn

    async def deliver(self, event: SDKEvent) -> None:
        """An event from the caller: hooks see it, then it enters the graph at Root."""
        if self._closed:
            return
        if isinstance(event, SDKSystemInitEvent):
            self._init_event = event
            self._run_hooks(event)
            return
        self._run_hooks(event, received=True)
        if not self._started.is_set():
            await self._started.wait()
        await self.root.queue_event(event)

    async def close(self, reason: str = "hangup") -> None:
        """The caller is gone: hooks see `system.user.left`, nodes stop, the session completes."""
        if self._closed:
            return
        self._closed = True
        self._run_hooks(SDKSystemUserLeftEvent(reason=reason))
        for node in self.nodes:
            await node.stop()
        if self._hook_tasks:
            await asyncio.wait(set(self._hook_tasks), timeout=5.0)
            for task in self._hook_tasks:
                task.cancel()
        self._complete.set()

    # -- hooks -----------------------------------------------------------------------
    def on_event(self, event_name: str) -> Callable[[Hook], Hook]:
        """Decorator: call `handler(session, event)` once per `event_name` event, whether it
        comes from the caller or from a node (aliases, or "*"; or "on_event_received", the
        published SDK's hook: every event from the peer)."""

        def register(handler: Hook) -> Hook:
            self.add_event_handler(event_name, handler)
            return handler

        return register

    def add_event_handler(self, event_name: str, handler: Hook) -> None:
        name = event_name if event_name in ("*", RECEIVED_HOOK) else canonical_type(event_name)
        self._hooks.setdefault(name, []).append(handler)

    def _run_hooks(self, event: SDKEvent, received: bool = False) -> None:
        """Run the hooks for `event`: its name's and "*" once per event (the first time it is
        seen, at Root or at Sink), "on_event_received" for every event from the peer."""
        if not self._hooks:
            return
        handlers: list[Hook] = []
        if self._hooked.get(id(event)) is not event:
            self._hooked[id(event)] = event
            handlers += self._hooks.get(event.type, []) + self._hooks.get("*", [])
        if received:
            handlers += self._hooks.get(RECEIVED_HOOK, [])
        for handler in handlers:
            task = asyncio.create_task(self._call_hook(handler, event))
            self._hook_tasks.add(task)
            task.add_done_callback(self._hook_tasks.discard)

    async def _call_hook(self, handler: Hook, event: SDKEvent) -> None:
        try:
            result = handler(self, event)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("%s: hook %r for %s raised", self.name, handler, event.type)

    async def _emit(self, event: SDKEvent) -> None:
        self._run_hooks(event)
        if self._output is None:
            return
        try:
            await self._output(event)
        except Exception:
            log.exception("%s: output failed for %s", self.name, event.type)

    def __repr__(self) -> str:
        return f"<AgentSession {self.session_id} ({len(self.nodes)} nodes)>"


CrewSession = AgentSession


def _cycle_from(node: Node, children: dict[Node, list[Node]], state: dict[Node, int],
                path: list[Node]) -> list[Node] | None:
    """Depth-first search from `node`: the first cycle found, as a path, or None. (A plain
    function: a nested recursive closure is a reference cycle that kept every call's
    graph alive until a full garbage collection.)"""
    state[node] = 1
    path.append(node)
    for child in children[node]:
        if state.get(child) == 1:
            return path[path.index(child) :] + [child]
        if child not in state and (found := _cycle_from(child, children, state, path)):
            return found
    path.pop()
    state[node] = 2
    return None
