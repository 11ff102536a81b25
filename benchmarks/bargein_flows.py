"""Barge-in on conversation flows (tests/kit/bargein_flows.py), split by speaker.

    .venv/bin/python -m benchmarks.bargein_flows            # dev and holdout
    .venv/bin/python -m benchmarks.bargein_flows holdout    # one split

Per split: barge-ins caught, fired before the caller spoke ("early"), false interrupts on
non-speech flows, and the latency from the audible onset to the frame that fired (the
agent's audio pauses at the next tick), overall and per (first or later reply, line).
Tune on dev only; holdout has other speakers (recorded, piper, espeak) and other draws.
"""

from __future__ import annotations

import collections
import sys

import numpy as np

from tests.kit.bargein_flows import build_flows, run_flow


def report(split: str) -> None:
    flows = build_flows(split)  # type: ignore[arg-type]
    lat: list[float] = []
    by: dict[tuple[str, str], list[float]] = collections.defaultdict(list)
    early, false, missed = [], [], []
    speech = nonspeech = 0
    for f in flows:
        fired = run_flow(f)
        if f.onset_ms is None:
            nonspeech += 1
            if fired:
                false.append(f"{f.name}@{fired[0]:.0f}")
            continue
        speech += 1
        if any(t < f.onset_ms for t in fired):
            early.append(f.name)
        after = [t - f.onset_ms for t in fired if t >= f.onset_ms]
        key = ("later" if f.later else "first", f.line)
        if after:
            lat.append(after[0])
            by[key].append(after[0])
        else:
            missed.append(f.name)
            by[key].append(np.inf)
    a = np.array(lat)
    print(f"[{split}] caught {len(lat)}/{speech}; early {len(early)}; "
          f"false {len(false)}/{nonspeech}; onset -> fire p50 {np.median(a):.0f} ms, "
          f"p90 {np.percentile(a, 90):.0f} ms, max {a.max():.0f} ms")
    for key in sorted(by):
        v = np.array(by[key])
        ok = v[np.isfinite(v)]
        print(f"  {key[0]:5s} {key[1]:8s} caught {len(ok)}/{len(v)}  "
              f"p50 {np.median(ok):5.0f}  max {ok.max():5.0f} ms")
    print("  missed:", ", ".join(missed) or "-")
    print("  early:", ", ".join(early) or "-")
    print("  false:", ", ".join(false) or "-")


def main() -> None:
    for split in sys.argv[1:] or ["dev", "holdout"]:
        report(split)


if __name__ == "__main__":
    main()
