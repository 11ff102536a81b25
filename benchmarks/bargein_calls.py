"""Barge-in as the product does it: whole calls on conversation flows, through the voice loop.

    .venv/bin/python -m benchmarks.bargein_calls                  # dev and holdout
    .venv/bin/python -m benchmarks.bargein_calls holdout          # one split
    .venv/bin/python -m benchmarks.bargein_calls dev --kinds speech,backchannel --list
    .venv/bin/python -m benchmarks.bargein_calls dev --resume-ms 240     # other settings

Every flow of `tests/kit/bargein_call_flows.py` is a whole call replayed twice under the virtual
clock with the demo agent (no greeting: the caller speaks first), a scripted recogniser and
espeak-ng behind the TTS cache: pass 1 finds when the agent's reply starts, pass 2 puts the
caller's sound that far into it. The call pauses the agent's audio when the detector fires,
confirms and interrupts when the speech lasts `bargein_confirm_ms`, resumes it after
`bargein_resume_ms` of quiet.

Per split:
- real barge-ins: confirmed (an `interrupt` at or after the audible onset) / total, first
  and later replies; pause latency (audible onset -> `bargein.pause`) and confirmed-interrupt
  latency (onset -> `interrupt`) p50/p90/max; pauses before the onset (on the echo); real
  barge-ins that resumed in between (paused, resumed before confirmation, paused again);
- non-speech: confirmed interrupts (false) / total; pauses and how long they lasted; the
  reply played whole after them;
- echo alone: pauses and interrupts (both should be none);
- backchannels: resumed with no interrupt / total; from the sound's end to the resume
  p50/p90/max and how many within 300 ms; the reply played whole;
- per line and caller level for the real barge-ins.
`--list` prints every flow's outcome; `--json PATH` writes them; `--confirm-ms` and
`--resume-ms` run the calls with other `CallSettings.bargein_confirm_ms` /
`bargein_resume_ms`; `--draws 200-239 [--kinds moh,babble]` runs fresh draws of
non-speech kinds instead of the splits (seeds 100-139 were looked at while setting the
confirmation, 200-239 not); `--wire pcmu` makes every line a phone call's (8 kHz mu-law both
ways, the echo made at the far end from what it decoded), as the live Twilio runs of
`benchmarks/bargein_calls_live.py` are. Piper's synthesis is random (holdout's piper flows differ a little
from run to run); everything else is the same every run.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*

from gateway.call import CallSettings  # noqa: E402
from tests.kit.bargein_call_flows import (  # noqa: E402
    NONSPEECH,
    Outcome,
    build_call_flows,
    calibrate,
    draw_flows,
    fresh_voice_flows,
    run_call_flow,
)

RESUME_TARGET_MS = 300.0


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    a = np.array(values)
    return (f"p50 {np.median(a):.0f} ms, p90 {np.percentile(a, 90):.0f} ms, "
            f"max {a.max():.0f} ms (n={len(a)})")


def _row(o: Outcome) -> dict[str, Any]:
    f = o.flow
    return {"name": f.name, "kind": f.kind, "voice": f.voice, "line": f.line,
            "level_db": f.level_db, "offset_s": f.offset_s, "later": f.later, "ok": o.ok,
            "problem": o.problem, "reply_start_ms": o.reply_start_ms, "onset_ms": o.onset_ms,
            "end_ms": o.end_ms, "pauses": o.pauses, "resumes": o.resumes,
            "interrupts": o.interrupts, "full_played": o.full_played,
            "pause_latency_ms": o.pause_latency_ms,
            "interrupt_latency_ms": o.interrupt_latency_ms,
            "resume_after_end_ms": o.resume_after_end_ms}


def _describe(o: Outcome) -> str:
    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x:.0f}"

    if not o.ok:
        return f"{o.flow.name}: SETUP {o.problem}"
    rel = o.reply_start_ms
    return (f"{o.flow.name}: onset +{ms(None if o.onset_ms is None else o.onset_ms - rel)} "
            f"end +{ms(None if o.end_ms is None else o.end_ms - rel)} | pauses "
            f"{[round(t - rel) for t in o.pauses]} resumes "
            f"{[(round(t - rel), round(p)) for t, p in o.resumes]} interrupts "
            f"{[round(t - rel) for t in o.interrupts]} | pause {ms(o.pause_latency_ms)} "
            f"interrupt {ms(o.interrupt_latency_ms)} resume-after-end "
            f"{ms(o.resume_after_end_ms)} full {o.full_played}")


def report(split: str, outcomes: list[Outcome]) -> None:
    ok = [o for o in outcomes if o.ok]
    bad = [o for o in outcomes if not o.ok]
    speech = [o for o in ok if o.flow.kind == "speech"]
    back = [o for o in ok if o.flow.kind == "backchannel"]
    noise = [o for o in ok if o.flow.kind in NONSPEECH]
    echo = [o for o in ok if o.flow.kind == "echo"]
    print(f"\n[{split}] {len(outcomes)} flows ({len(bad)} did not run as planned)")
    for o in bad:
        print(f"  setup: {o.flow.name}: {o.problem}")

    if speech:
        caught = [o for o in speech if o.caught]
        first = [o for o in speech if not o.flow.later]
        later = [o for o in speech if o.flow.later]
        print(f"real barge-ins confirmed: {len(caught)}/{len(speech)} "
              f"(first reply {sum(o.caught for o in first)}/{len(first)}, "
              f"later reply {sum(o.caught for o in later)}/{len(later)})")
        pl = [o.pause_latency_ms for o in speech if o.pause_latency_ms is not None]
        il = [o.interrupt_latency_ms for o in speech if o.interrupt_latency_ms is not None]
        print(f"  pause latency (audible onset -> agent paused): {_stats(pl)}")
        print(f"    within 120 ms: {sum(v <= 120 for v in pl)}/{len(speech)}, "
              f"within 250 ms: {sum(v <= 250 for v in pl)}/{len(speech)}, "
              f"never paused: {sum(o.pause_latency_ms is None for o in speech)}")
        print(f"  confirmed-interrupt latency (audible onset -> interrupt): {_stats(il)}")
        early = [o for o in speech if o.early_pauses]
        print(f"  paused before the caller spoke (on the echo / an earlier reply): "
              f"{len(early)}/{len(speech)}")
        flicker = [o for o in speech if o.caught and any(
            t >= (o.onset_ms or 0) for t, _ in o.resumes)]
        print(f"  resumed during the caller's speech before the confirmation: "
              f"{len(flicker)}/{len(speech)}")
        missed = [o.flow.name for o in speech if not o.caught]
        print("  missed:", ", ".join(missed) or "-")
        by_line: dict[str, list[Outcome]] = collections.defaultdict(list)
        by_level: dict[float, list[Outcome]] = collections.defaultdict(list)
        for o in speech:
            by_line[o.flow.line].append(o)
            by_level[o.flow.level_db].append(o)
        for key, group in [*by_line.items(), *sorted(by_level.items(), reverse=True)]:
            lat = [o.pause_latency_ms for o in group if o.pause_latency_ms is not None]
            name = f"{key:+.0f} dB" if isinstance(key, float) else key
            print(f"    {name:8s} confirmed {sum(o.caught for o in group)}/{len(group)}  "
                  f"pause p50 {np.median(lat) if lat else float('nan'):5.0f} "
                  f"max {max(lat) if lat else float('nan'):5.0f} ms  interrupt p50 "
                  f"{np.median([o.interrupt_latency_ms for o in group if o.caught] or [np.nan]):5.0f} ms")

    if noise:
        false = [o for o in noise if o.interrupts]
        paused = [o for o in noise if o.pauses]
        lengths = [p for o in noise for _, p in o.resumes]
        print(f"non-speech: false confirmed interrupts {len(false)}/{len(noise)}; "
              f"paused {len(paused)}/{len(noise)} ({sum(len(o.pauses) for o in noise)} pauses), "
              f"pause length {_stats(lengths)}")
        print(f"  reply played whole after them: "
              f"{sum(bool(o.full_played) for o in noise)}/{len(noise) - len(false)}")
        kinds = collections.Counter(o.flow.kind for o in paused)
        print("  paused on:", ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "-")
        print("  false interrupts:", ", ".join(o.flow.name for o in false) or "-")
    if echo:
        print(f"echo alone: paused {sum(bool(o.pauses) for o in echo)}/{len(echo)}, "
              f"interrupted {sum(bool(o.interrupts) for o in echo)}/{len(echo)}, reply played "
              f"whole {sum(bool(o.full_played) for o in echo)}/{len(echo)}")
    if back:
        resumed = [o for o in back if not o.interrupts]
        paused = [o for o in back if o.pauses]
        after = [o.resume_after_end_ms for o in back
                 if not o.interrupts and o.resume_after_end_ms is not None]
        print(f"backchannels: resumed (no interrupt) {len(resumed)}/{len(back)}; paused "
              f"{len(paused)}/{len(back)}; sound end -> resume {_stats(after)}; "
              f"within {RESUME_TARGET_MS:.0f} ms {sum(v <= RESUME_TARGET_MS for v in after)}"
              f"/{len(after)}; reply played whole {sum(bool(o.full_played) for o in back)}"
              f"/{len(resumed)}")
        print("  interrupted:", ", ".join(o.flow.name for o in back if o.interrupts) or "-")
        print("  not paused:", ", ".join(o.flow.name for o in back if not o.pauses) or "-")


def _seeds(text: str) -> tuple[int, int]:
    """'FIRST-LAST' -> (FIRST, LAST)."""
    first, last = (int(x) for x in text.split("-"))
    return first, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("splits", nargs="*", default=["dev", "holdout"])
    ap.add_argument("--kinds", default="", help="comma-separated: speech, backchannel, "
                    "nonspeech, echo (default: all)")
    ap.add_argument("--limit", type=int, default=0, help="at most this many flows per split")
    ap.add_argument("--list", action="store_true", help="print every flow's outcome")
    ap.add_argument("--json", default="", help="write every flow's outcome here")
    ap.add_argument("--confirm-ms", type=int, default=None,
                    help="CallSettings.bargein_confirm_ms (default: the gateway's)")
    ap.add_argument("--resume-ms", type=int, default=None,
                    help="CallSettings.bargein_resume_ms (default: the gateway's)")
    ap.add_argument("--draws", type=_seeds, metavar="FIRST-LAST",
                    help="instead of the splits: fresh draws of --kinds (default moh,babble) "
                    "for seeds FIRST..LAST (tests.kit.bargein_call_flows.draw_flows)")
    ap.add_argument("--fresh", type=_seeds, metavar="FIRST-LAST",
                    help="instead of the splits: fresh real barge-ins and backchannels in "
                    "holdout's voices for seeds FIRST..LAST "
                    "(tests.kit.bargein_call_flows.fresh_voice_flows)")
    ap.add_argument("--wire", default=None, choices=["pcmu", "pcma"],
                    help="every line a phone call's: 8 kHz G.711 both ways, the echo made at "
                    "the far end (as on Twilio or SIP)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    kinds = set(filter(None, args.kinds.split(",")))
    overrides = {k: v for k, v in (("bargein_confirm_ms", args.confirm_ms),
                                   ("bargein_resume_ms", args.resume_ms)) if v is not None}
    settings = CallSettings(**overrides)
    print(f"bargein_confirm_ms {settings.bargein_confirm_ms}, "
          f"bargein_resume_ms {settings.bargein_resume_ms}")
    t0 = time.perf_counter()
    cal = calibrate()
    print(f"agent level {cal.agent_dbfs:.1f} dBFS; its reply {cal.story_frames * 20 / 1000:.1f} s")
    rows: dict[str, list[dict[str, Any]]] = {}
    splits = (["draws {}-{}".format(*args.draws)] if args.draws
              else ["fresh {}-{}".format(*args.fresh)] if args.fresh else args.splits)
    for split in splits:
        if args.fresh:
            flows = fresh_voice_flows(*args.fresh)
        elif args.draws:
            flows = draw_flows(*args.draws, sorted(kinds & set(NONSPEECH)) or ("moh", "babble"))
        else:
            flows = build_call_flows(split)
        if kinds:
            flows = [f for f in flows if f.kind in kinds
                     or ("nonspeech" in kinds and f.kind in NONSPEECH)]
        if args.limit:
            flows = flows[: args.limit]
        outcomes = []
        for f in flows:
            o = run_call_flow(f, cal, settings=settings, wire=args.wire)
            outcomes.append(o)
            if args.list:
                print(" ", _describe(o), flush=True)
        report(split, outcomes)
        rows[split] = [_row(o) for o in outcomes]
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
