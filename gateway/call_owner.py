"""What the parts of a call (`gateway.listening`, `gateway.speaking`, `gateway.barge_in`)
see of the `Call` that owns them and drives them.

A part holds its owner through a weak proxy: no reference cycle, so an ended call is freed
by reference counting, not left for the cyclic collector."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from agent.events import SDKEvent
    from gateway.turns import CallTurns


class CallOwner(Protocol):
    call_id: str
    closed: bool  # the call is over: its recogniser is closed, nothing more is sent
    turns: CallTurns  # the per-turn record (`gateway.turns`)

    def now(self) -> float:
        """The call's clock (seconds)."""
        ...

    def elapsed(self) -> float:
        """Seconds since the call started, on its clock."""
        ...

    def mark(self, kind: str, at: float | None = None, **fields: Any) -> None:
        """An entry in the call's timeline (and its recording), at `at` (elapsed seconds;
        default: now)."""

    async def deliver(self, event: SDKEvent) -> None:
        """Show an event to the caller's transport and deliver it to the session."""

    async def user_said(self, text: str) -> None:
        """A user turn in words: to the conversation and the session."""

    async def hang_up(self) -> None:
        """The agent's hang-up, once its audio has played: the line, then the call."""

    async def transfer(self, target: str) -> None:
        """The agent's transfer, once its audio has played."""
