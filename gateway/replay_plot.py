"""The picture of a replayed call (`atoms-gateway replay --plot`, `ReplayResult.plot`).

Two rows on one time axis: the caller's channel as the voice loop heard it, with the
caller's speech (VAD) shaded and what the recogniser made of each turn written on it; the
agent's audio as it was played, with what the agent said and what the caller heard of it.
Each confirmed barge-in is a red line with its latency (speech onset to the agent's audio
pausing) labelled; each answer's reply latency (the end of the caller's speech to the
answer's first audio) is a labelled bracket. Needs matplotlib (the `[plot]` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from media.frames import FRAME_MS, SAMPLE_RATE

if TYPE_CHECKING:
    from gateway.testing import ReplayResult

__all__ = ["figure", "reply_latencies", "save_plot"]

MAX_LABEL_CHARS = 48


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 3] + "..."


def _first_play_after(result: ReplayResult, t_ms: float) -> float | None:
    """When the first agent frame played at or after `t_ms` (ms), if any."""
    k = int(t_ms // FRAME_MS)
    later = np.flatnonzero(result.played[k:])
    return float((k + later[0]) * FRAME_MS) if len(later) else None


def reply_latencies(result: ReplayResult) -> list[dict[str, Any]]:
    """Each answered caller turn: `text` (what was recognised), `speech_end_ms` (the end of
    the caller's speech), `reply_ms` (when the answer's first audio played) and
    `latency_ms` between the two. Turns the agent never answered in audio are left out."""
    out = []
    turns = [e for e in result.events if e["type"] == "turn.end" and e.get("text")]
    for i, ev in enumerate(turns):
        t = float(ev["t_ms"])
        ends = [b for a, b in result.speech_segments if a <= t]
        end = min(max(ends), t) if ends else t
        first = _first_play_after(result, t)
        nxt = float(turns[i + 1]["t_ms"]) if i + 1 < len(turns) else None
        if first is None or (nxt is not None and first > nxt):
            continue
        out.append({"text": str(ev["text"]), "speech_end_ms": end, "reply_ms": first,
                    "latency_ms": round(first - end, 1)})
    return out


def _agent_lines(result: ReplayResult) -> list[tuple[float, str]]:
    """(when it started playing, ms; text) of each thing the agent said."""
    rows: list[tuple[float, str]] = []
    parts: list[str] | None = None
    start = 0.0
    for ev in result.events:
        kind, t = ev["type"], float(ev["t_ms"])
        if kind == "agent.speak":
            rows.append((t, str(ev.get("text", ""))))
        elif kind == "agent.llm.response.chunk":
            if parts is None:
                parts, start = [], t
            parts.append(str(ev.get("text", "")))
        elif kind == "agent.llm.response.end" and parts is not None:
            rows.append((start, "".join(parts)))
            parts = None
    if parts:
        rows.append((start, "".join(parts)))
    out = []
    for t, text in rows:
        played = _first_play_after(result, t)
        out.append((played if played is not None else t, text))
    return out


def figure(result: ReplayResult, title: str | None = None) -> Any:
    """The matplotlib Figure of the call (not saved; `save_plot` saves and closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(14, 6.5), sharex=True)
    n_int = len(result.interrupts)
    fig.suptitle(title or (f"Replayed call: {result.duration_ms / 1000:.1f} s, "
                           f"{n_int} interrupt{'s' if n_int != 1 else ''}"))
    t = np.arange(len(result.caller)) / SAMPLE_RATE
    top.plot(t, result.caller, lw=0.4, color="tab:blue", label="caller audio (as heard)")
    for i, (a, b) in enumerate(result.speech_segments):
        top.axvspan(a / 1000, b / 1000, color="tab:green", alpha=0.15,
                    label="caller speech (VAD)" if i == 0 else None)
    top.set_ylabel("caller")
    ta = np.arange(len(result.agent)) / SAMPLE_RATE
    bottom.plot(ta, result.agent, lw=0.4, color="tab:orange", label="agent audio (played)")
    bottom.set_ylabel("agent")
    bottom.set_xlabel("seconds from the start of the call")
    for ax in (top, bottom):
        ax.set_ylim(-36000, 36000)

    # the transcript on the timeline
    for ev in result.events:
        if ev["type"] == "turn.end" and ev.get("text"):
            top.annotate(f"caller: {_short(str(ev['text']))}", (ev["t_ms"] / 1000, 33000),
                         fontsize=8, va="top", ha="left", color="tab:green")
    for i, (at, text) in enumerate(_agent_lines(result)):
        bottom.annotate(f"agent: {_short(text)}", (at / 1000, 33000 - 9000 * (i % 2)),
                        fontsize=8, va="top", ha="left", color="tab:brown")
    for ev in result.events:
        if ev["type"] == "agent.heard" and ev.get("text") is not None:
            bottom.annotate(f"heard: {_short(str(ev['text']))}", (ev["t_ms"] / 1000, -33000),
                            fontsize=7, va="bottom", ha="right", color="dimgray")

    # barge-in latencies: speech onset to the pause, and the interrupt itself
    for i, it in enumerate(result.interrupts):
        at, onset = it["at_ms"] / 1000, it["speech_onset_ms"] / 1000
        for ax in (top, bottom):
            ax.axvline(at, color="red", lw=1.2,
                       label="interrupt (agent paused)" if i == 0 and ax is bottom else None)
        top.axvspan(onset, at, color="red", alpha=0.2,
                    label="barge-in latency" if i == 0 else None)
        top.annotate(f"barge-in {it['latency_ms']:.0f} ms", (at, -30000), fontsize=8,
                     color="red", ha="left", va="bottom", xytext=(3, 0),
                     textcoords="offset points")

    # reply latencies: the caller's speech end to the answer's first audio
    for i, r in enumerate(reply_latencies(result)):
        a, b = r["speech_end_ms"] / 1000, r["reply_ms"] / 1000
        bottom.axvspan(a, b, color="tab:purple", alpha=0.2,
                       label="reply latency" if i == 0 else None)
        bottom.annotate(f"reply {r['latency_ms']:.0f} ms", ((a + b) / 2, -20000), fontsize=8,
                        color="tab:purple", ha="center", va="bottom")

    top.legend(loc="lower left", fontsize=7, framealpha=0.8)
    bottom.legend(loc="lower left", fontsize=7, framealpha=0.8)
    fig.tight_layout()
    return fig


def save_plot(result: ReplayResult, path: str, title: str | None = None) -> None:
    """Draw the call (`figure`) and write it to `path` (PNG, SVG, PDF: by the name)."""
    import matplotlib.pyplot as plt

    fig = figure(result, title)
    try:
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
