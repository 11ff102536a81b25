"""OpenTelemetry traces (the optional extra `atoms-gateway[otel]`, `opentelemetry-sdk`).

A span per call (`call`), a child span per turn (`turn`), and inside each turn spans for
the recogniser (`stt`: end of the caller's turn to the final transcript), the LLM (`llm`:
the request to its first token, where an `OpenAIClient` is used) and the synthesiser
(`tts`: the agent's first words to their first audio). Every span has the call's
`atoms.transport` and `atoms.call_id`; a turn has its latencies in milliseconds
(`atoms.reply_latency_ms`, ...), whether it was interrupted, and how many barge-ins paused
it. Spans are built from the per-turn record (`gateway.turns`) when a turn finishes, with
the times it recorded, so nothing runs per frame.

Configured by the standard environment variables: tracing is on when
`OTEL_TRACES_EXPORTER` names an exporter (`console`, or `otlp` with
`opentelemetry-exporter-otlp` installed) and `OTEL_SDK_DISABLED` is not true; the SDK
reads `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`
and the exporter its `OTEL_EXPORTER_*`. A program that installed its own SDK tracer
provider (`opentelemetry-instrument`, say) has its provider used. Off, or without the
extra installed, nothing is imported and no sink is added: it costs nothing.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from gateway.turns import CallTurns, Turn

log = logging.getLogger(__name__)

SCOPE = "atoms-gateway"


def _ns(call: CallTurns, t: float) -> int:
    """A time on the call's clock as epoch nanoseconds."""
    return int((call.wall0 + t) * 1e9)


def enabled_by_env(env: dict[str, str] | None = None) -> bool:
    env = dict(os.environ if env is None else env)
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = [e.strip().lower() for e in env.get("OTEL_TRACES_EXPORTER", "").split(",")]
    return any(e and e != "none" for e in exporters)


def provider_from_env() -> Any | None:
    """An SDK `TracerProvider` as the OTEL_* variables ask, or None (off, or the SDK or the
    exporter is not installed: logged)."""
    if not enabled_by_env():
        return None
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
    except ImportError:
        log.warning("OTEL_TRACES_EXPORTER is set but opentelemetry-sdk is not installed "
                    "(pip install 'atoms-gateway[otel]'); tracing is off")
        return None
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):  # the program set one up itself
        return current
    provider = TracerProvider()  # (resource and sampler from OTEL_* variables)
    names = [e.strip().lower() for e in os.environ.get("OTEL_TRACES_EXPORTER", "").split(",")]
    for name in names:
        if name in ("", "none"):
            continue
        exporter: Any
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            try:
                protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                                          os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL",
                                                         "http/protobuf"))
                if protocol == "grpc":
                    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
                        OTLPSpanExporter,
                    )
                else:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
                        OTLPSpanExporter,
                    )
            except ImportError:
                log.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp; "
                            "no spans are exported there")
                continue
            exporter = OTLPSpanExporter()
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s: unknown exporter (use console or otlp)", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class Tracing:
    """A `TurnSink` that makes the spans of each call on `provider`'s tracer."""

    def __init__(self, provider: Any) -> None:
        from opentelemetry import trace

        self.provider = provider
        self._trace = trace
        self.tracer = provider.get_tracer(SCOPE)
        self._spans: dict[int, Any] = {}  # id(CallTurns) -> its call span

    def _attrs(self, call: CallTurns) -> dict[str, Any]:
        return {"atoms.transport": call.transport, "atoms.call_id": call.call_id,
                "atoms.gateway_id": call.gateway_id}

    def call_started(self, call: CallTurns) -> None:
        span = self.tracer.start_span("call", attributes=self._attrs(call),
                                      start_time=_ns(call, 0.0))
        self._spans[id(call)] = span

    def turn_done(self, call: CallTurns, turn: Turn) -> None:
        parent = self._spans.get(id(call))
        if parent is None:
            return
        ctx = self._trace.set_span_in_context(parent)
        start = next((t for t in (turn.caller_started, turn.caller_said_at, turn.first_text_at,
                                  turn.first_audio_out) if t is not None), turn.ended_at or 0.0)
        end = max(start, turn.ended_at or start)
        attrs = self._attrs(call)
        attrs["atoms.turn"] = turn.index
        attrs["atoms.interrupted"] = turn.interrupted
        attrs["atoms.bargein_pauses"] = len(turn.pauses)
        for name, value in (("atoms.reply_latency_ms", turn.reply_latency),
                            ("atoms.stt_latency_ms", turn.stt_latency),
                            ("atoms.tts_first_audio_ms", turn.tts_first_audio),
                            ("atoms.llm_first_token_ms", turn.llm_first_token_s)):
            if value is not None:
                attrs[name] = round(value * 1000, 1)
        span = self.tracer.start_span("turn", context=ctx, attributes=attrs,
                                      start_time=_ns(call, start))
        inner = self._trace.set_span_in_context(span)
        base = self._attrs(call)
        if turn.turn_end is not None and turn.transcript_at is not None:
            self._child("stt", inner, call, turn.turn_end, turn.transcript_at,
                        {**base, "atoms.latency_ms": round((turn.stt_latency or 0) * 1000, 1)})
        if turn.llm_first_token_s is not None and turn.caller_said_at is not None:
            self._child("llm", inner, call, turn.caller_said_at,
                        turn.caller_said_at + turn.llm_first_token_s,
                        {**base, "atoms.first_token_ms": round(turn.llm_first_token_s * 1000, 1)})
        asked = turn.tts_asked_at if turn.tts_asked_at is not None else turn.first_text_at
        if asked is not None and turn.tts_ready_at is not None:
            self._child("tts", inner, call, asked, turn.tts_ready_at,
                        {**base, "atoms.first_audio_ms":
                         round((turn.tts_first_audio or 0) * 1000, 1)})
        span.end(end_time=_ns(call, end))

    def _child(self, name: str, ctx: Any, call: CallTurns, start: float, end: float,
               attrs: dict[str, Any]) -> None:
        span = self.tracer.start_span(name, context=ctx, attributes=attrs,
                                      start_time=_ns(call, start))
        span.end(end_time=_ns(call, max(start, end)))

    def call_ended(self, call: CallTurns, outcome: str) -> None:
        span = self._spans.pop(id(call), None)
        if span is not None:
            span.set_attribute("atoms.outcome", outcome)
            span.set_attribute("atoms.turns", call.turns)
            span.end()

    def agent_error(self, call: CallTurns, severity: str) -> None:
        span = self._spans.get(id(call))
        if span is not None:
            span.add_event("agent.error", {"severity": severity})
