"""Fingerprint of the barge-in detector on the labelled set: per case, the frames it fired
on and hashes of every frame's kind, features and echo-canceller state, to show that a
change meant to be a pure refactor or speed-up changes nothing.

    .venv/bin/python -m benchmarks.bargein_fingerprint before.json          # old code
    .venv/bin/python -m benchmarks.bargein_fingerprint after.json --diff before.json

The "decisions" hash covers what the rule sees (hit, kind, gate); the "state" hash every
feature value, the canceller's filter, delay, leak and expected echo, the residual and the
GCC and Welch accumulators, bit for bit.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json

from media.bargein import BargeInDetector
from media.frames import FRAME_MS, split_frames
from tests.kit.bargein_eval import Case, build_cases, play_tick


def fingerprint(case: Case) -> tuple[list[int], str, str]:
    det = BargeInDetector()
    aec = det.echo_canceller
    decisions, state = hashlib.sha256(), hashlib.sha256()
    fired = []
    for i, (ref, mic) in enumerate(zip(split_frames(case.agent), split_frames(case.caller),
                                       strict=True)):
        if i == case.warmup_ms // FRAME_MS:
            det.reset()
        hit = play_tick(det, i, ref, mic)
        if hit:
            fired.append(i)
        f = det.last
        assert f is not None
        decisions.update(repr((hit, det.last_kind, f.active)).encode())
        state.update(repr(dataclasses.astuple(f)).encode())
        state.update(repr((aec.explained_share, aec.delay, aec.start, aec.leak_db,
                           aec.raw_leak_db, aec.ref_energy, aec.expected_echo())).encode())
        for a in (aec.h, det._prev_e, aec._gacc, aec._sxm, aec._sxx):
            if a is not None:
                state.update(a.tobytes())
    return fired, decisions.hexdigest()[:16], state.hexdigest()[:16]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", help="write the fingerprints here (JSON)")
    ap.add_argument("--splits", default="dev,holdout,redraw")
    ap.add_argument("--diff", metavar="JSON", help="compare with an earlier fingerprint")
    args = ap.parse_args()
    prints = {f"{split}:{case.name}": list(fingerprint(case))
              for split in args.splits.split(",") for case in build_cases(split)}
    with open(args.out, "w") as f:
        json.dump(prints, f, indent=0)
    print(f"{len(prints)} cases, {sum(1 for v in prints.values() if v[0])} fired")
    if args.diff:
        with open(args.diff) as f:
            old = json.load(f)
        common = prints.keys() & old.keys()
        moved = sorted(k for k in common if old[k][:2] != prints[k][:2])
        changed = sorted(k for k in common if old[k][2] != prints[k][2])
        print(f"{len(common)} cases compared: decisions differ in {len(moved)}, "
              f"values in {len(changed)}")
        for k in moved:
            print(f"  {k}: fired {old[k][0]} -> {prints[k][0]}")


if __name__ == "__main__":
    main()
