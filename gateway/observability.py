"""What an `AtomsApp` observes of its calls: Prometheus metrics (`GET /metrics`,
`gateway.metrics`), conversation log lines (`gateway.convlog`) and, when the OTEL_*
variables ask for them, OpenTelemetry spans (`gateway.tracing`), all fed from each call's
per-turn record (`gateway.turns`). The app calls `attach` when a call opens, `refused`
when one cannot be taken and `removed` when one leaves its registry.
"""

from __future__ import annotations

import logging
from contextvars import Token
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agent.clients.observe import first_token_observer
from gateway.convlog import ConversationLog
from gateway.metrics import Metrics, transport_name
from gateway.turns import TurnSink

if TYPE_CHECKING:
    from gateway.app import AtomsApp
    from gateway.call import Call

log = logging.getLogger(__name__)


class Observability:
    """The app's metrics registry, conversation log and tracer, and `/metrics`."""

    def __init__(self, app: AtomsApp) -> None:
        self.app = app
        self.metrics = Metrics(self._live_calls)
        self.conversation = ConversationLog(redact=bool(app.settings.log_redact))
        self.tracing: Any = None
        self.sinks: list[TurnSink] = [self.conversation]
        if app.settings.metrics:  # (off: no route, no metric work; the counts stay at 0)
            self.sinks.append(self.metrics)
            app.web.router.add_get("/metrics", self._scrape)
            app.media_tick.on_lag = self.metrics.observe_tick_lag
        from gateway.tracing import provider_from_env

        provider = provider_from_env()
        if provider is not None:
            self.use_tracer_provider(provider)

    def use_tracer_provider(self, provider: Any) -> None:
        """Trace calls on `provider` (an SDK `TracerProvider`; tests: one with an in-memory
        exporter)."""
        from gateway.tracing import Tracing

        if self.tracing is not None:
            self.sinks.remove(self.tracing)
        self.tracing = Tracing(provider)
        self.sinks.append(self.tracing)

    def _live_calls(self) -> list[tuple[str, Any]]:
        live = [(c.turns.transport, c.transport) for c in self.app.calls.values()]
        live += [("atoms", None)] * len(self.app.sessions)
        return live

    async def _scrape(self, request: web.Request) -> web.Response:
        body, content_type = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": content_type})

    # -- what the app reports ---------------------------------------------------------------
    def attach(self, call: Call, context: dict[str, Any] | None) -> None:
        """A call opens: its turns go to this app's sinks, labelled with its transport."""
        turns = call.turns
        turns.gateway_id = call.gateway_id
        turns.transport = transport_name(call.transport, context)
        turns.sinks = self.sinks

    def bind(self, call: Call) -> Token[Any]:
        """Until `unbind`, tasks created here (the call's setup handler, and so its
        session's nodes) report their `OpenAIClient`'s first token to `call`'s turns."""
        return first_token_observer.set(call.turns.llm_first_token)

    def unbind(self, token: Token[Any]) -> None:
        first_token_observer.reset(token)

    def refused(self, transport: Any, context: dict[str, Any] | None = None) -> None:
        if not self.app.settings.metrics:
            return
        self.metrics.refused(transport if isinstance(transport, str)
                             else transport_name(transport, context))

    def removed(self, call: Call) -> None:
        self.metrics.call_removed(call.transport)

    def session_ended(self) -> None:
        self.metrics.session_ended()

    def startup_lines(self) -> list[str]:
        """What the start-up log says of observability."""
        lines = ["metrics: GET /metrics (Prometheus)" if self.app.settings.metrics
                 else "metrics: off"]
        if self.tracing is not None:
            lines.append("traces: OpenTelemetry (OTEL_* settings)")
        lines.append("conversation log: one line per turn" +
                     (", words redacted" if self.conversation.redact else ""))
        return lines
