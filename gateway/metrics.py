"""Prometheus metrics (`GET /metrics`, text format), with the official `prometheus-client`.

Each `AtomsApp` has its own `CollectorRegistry`, so several apps in one process (tests)
never share a count. Latencies come from the per-turn record (`gateway.turns`) when a turn
finishes, so nothing here runs per frame: calls up now and frames dropped are read from the
app's call registry when `/metrics` is scraped, and the media tick's lag is observed once
per tick (50 a second, not per call).

Families (histogram buckets 50 ms to 5 s for voice latencies):

- `atoms_calls_active{transport}` (gauge): calls up now (Atoms event sessions on /ws as
  transport "atoms").
- `atoms_calls_total{transport,outcome}`: calls ended; outcome completed, refused, failed
  or transferred.
- `atoms_reply_latency_seconds`: the caller's last voiced frame (or typed words) to the
  first frame of the agent's answer leaving the gateway.
- `atoms_bargein_latency_seconds`: the caller's sound onset (as the barge-in detector's
  gate first let it through) to the agent's audio pausing.
- `atoms_interrupts_total{kind}`: barge-ins confirmed, or resumed (not confirmed).
- `atoms_stt_latency_seconds`: end of the caller's turn to the final transcript.
- `atoms_tts_first_audio_seconds`: the first sentence of a turn handed to the synthesiser
  to its first audio.
- `atoms_llm_first_token_seconds`: an `OpenAIClient` request to its first content.
- `atoms_media_tick_lag_seconds`: how late each 20 ms media tick ran.
- `atoms_frames_dropped_total{direction}`: out, agent frames a peer could not take; in,
  caller frames that came faster than real time.
- `atoms_agent_errors_total{severity}`: `agent.error` events from the agents.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from gateway.turns import CallTurns, Turn

log = logging.getLogger(__name__)

VOICE_BUCKETS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.75, 1.0, 1.25, 1.5, 2.0,
                 2.5, 3.0, 4.0, 5.0)
TICK_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)
OUTCOMES = ("completed", "refused", "failed", "transferred")

disable_created_metrics()  # (no `_created` series beside every counter and histogram)


class Metrics:
    """The app's metric families and its registry; a `TurnSink` for its calls."""

    def __init__(self, calls: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        """`calls()` yields (transport name, transport) for each call up now."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.calls_total = Counter("atoms_calls_total", "Calls ended, by transport and outcome",
                                   ["transport", "outcome"], registry=r)
        self.reply_latency = Histogram(
            "atoms_reply_latency_seconds",
            "Caller's last voiced frame to the first frame of the agent's answer sent",
            buckets=VOICE_BUCKETS, registry=r)
        self.bargein_latency = Histogram(
            "atoms_bargein_latency_seconds", "Caller's speech onset to the agent's audio pausing",
            buckets=VOICE_BUCKETS, registry=r)
        self.interrupts = Counter("atoms_interrupts_total",
                                  "Barge-ins: confirmed (interrupted) or resumed",
                                  ["kind"], registry=r)
        self.stt_latency = Histogram("atoms_stt_latency_seconds",
                                     "End of the caller's turn to the final transcript",
                                     buckets=VOICE_BUCKETS, registry=r)
        self.tts_first_audio = Histogram("atoms_tts_first_audio_seconds",
                                         "First sentence of a turn to the synthesiser, to its first audio",
                                         buckets=VOICE_BUCKETS, registry=r)
        self.llm_first_token = Histogram("atoms_llm_first_token_seconds",
                                         "OpenAIClient request to its first content",
                                         buckets=VOICE_BUCKETS, registry=r)
        self.tick_lag = Histogram("atoms_media_tick_lag_seconds",
                                  "How late each 20 ms media tick ran",
                                  buckets=TICK_BUCKETS, registry=r)
        self.agent_errors = Counter("atoms_agent_errors_total", "agent.error events",
                                    ["severity"], registry=r)
        self._live = _LiveCollector(calls)
        r.register(self._live)
        for kind in ("confirmed", "resumed"):
            self.interrupts.labels(kind)  # (present at 0 from the start)
        self._confirmed = self.interrupts.labels("confirmed")
        self._resumed = self.interrupts.labels("resumed")

    # -- what the app reports --------------------------------------------------------------
    def refused(self, transport: str) -> None:
        self.calls_total.labels(transport, "refused").inc()

    def observe_tick_lag(self, seconds: float) -> None:
        self.tick_lag.observe(seconds)

    def call_removed(self, transport: Any) -> None:
        """A call left the registry: its transport's drop counts become history."""
        self._live.ended_out += getattr(transport, "dropped", 0) or 0
        self._live.ended_in += getattr(transport, "dropped_in", 0) or 0

    def session_ended(self) -> None:
        """An Atoms event session on /ws ended (it has no voice loop, so no turns)."""
        self.calls_total.labels("atoms", "completed").inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # -- TurnSink ---------------------------------------------------------------------------
    def call_started(self, call: CallTurns) -> None:
        return None

    def turn_done(self, call: CallTurns, turn: Turn) -> None:
        for value, hist in ((turn.reply_latency, self.reply_latency),
                            (turn.stt_latency, self.stt_latency),
                            (turn.tts_first_audio, self.tts_first_audio),
                            (turn.llm_first_token_s, self.llm_first_token)):
            if value is not None:
                hist.observe(value)
        for latency in turn.pauses:
            self.bargein_latency.observe(latency)
        if turn.interrupted:
            self._confirmed.inc()
        if turn.resumed:
            self._resumed.inc(turn.resumed)

    def call_ended(self, call: CallTurns, outcome: str) -> None:
        self.calls_total.labels(call.transport, outcome).inc()

    def agent_error(self, call: CallTurns, severity: str) -> None:
        self.agent_errors.labels(severity).inc()


class _LiveCollector(Collector):
    """Read at scrape time from the app's registry of calls: calls up now, frames dropped."""

    def __init__(self, calls: Callable[[], Iterable[tuple[str, Any]]]) -> None:
        self._calls = calls
        self.ended_out = 0  # frames dropped by calls that have ended
        self.ended_in = 0

    def describe(self) -> Iterable[Metric]:
        return [GaugeMetricFamily("atoms_calls_active", "Calls up now", labels=["transport"]),
                CounterMetricFamily("atoms_frames_dropped", "Audio frames dropped",
                                    labels=["direction"])]

    def collect(self) -> Iterable[Metric]:
        active: dict[str, int] = {}
        out, inn = self.ended_out, self.ended_in
        for name, transport in self._calls():
            active[name] = active.get(name, 0) + 1
            out += getattr(transport, "dropped", 0) or 0
            inn += getattr(transport, "dropped_in", 0) or 0
        gauge = GaugeMetricFamily("atoms_calls_active", "Calls up now", labels=["transport"])
        for name, n in sorted(active.items()):
            gauge.add_metric([name], n)
        yield gauge
        dropped = CounterMetricFamily("atoms_frames_dropped", "Audio frames dropped",
                                      labels=["direction"])
        dropped.add_metric(["out"], out)
        dropped.add_metric(["in"], inn)
        yield dropped


def transport_name(transport: Any, context: dict[str, Any] | None) -> str:
    """What `transport` labels a call's metrics: the provider of a media stream (twilio,
    telnyx, ...), else the kind of transport (ws, webrtc, sip, audiosocket)."""
    provider = (context or {}).get("provider")
    if isinstance(provider, str) and provider.isidentifier() and len(provider) <= 20:
        return provider.lower()
    kind = type(transport).__name__
    for prefix, name in (("WebClient", "ws"), ("WebRtc", "webrtc"), ("Rtp", "sip"),
                         ("Sip", "sip"), ("AudioSocket", "audiosocket"),
                         ("MediaStream", "stream")):
        if kind.startswith(prefix):
            return name
    return "other"
