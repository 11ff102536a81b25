"""Barge-in on conversation flows LIVE, over Twilio Media Streams or SIP/RTP, against replay.

    .venv/bin/python -m benchmarks.bargein_calls_live                 # 16 flows per split
    .venv/bin/python -m benchmarks.bargein_calls_live dev --n 8 --list --keep /tmp/recs
    .venv/bin/python -m benchmarks.bargein_calls_live dev --via sip --n 16 --list

A subset of the flows of `tests/kit/bargein_call_flows.py` (real barge-ins, backchannels,
non-speech, echo alone; both splits) runs three ways:
- replay: the flow as `benchmarks/bargein_calls.py` runs it (virtual clock, 16 kHz caller
  channel, the line's echo added by the replay);
- live: a served gateway (`AtomsApp` on 127.0.0.1, the demo agent without its greeting, the
  same scripted recogniser, espeak-ng behind the TTS cache, `record_dir` on) and a
  `websockets` client speaking Twilio's protocol: it sends the same caller channel in real
  time, one 20 ms mu-law frame at 8 kHz every 20 ms, plays what it receives as Twilio does
  (in real time from its arrival; marks answered once the audio before them has played;
  `clear` drops the rest), and echoes what it plays back into its microphone (the line's
  delay and gain) as a phone line does: on its own 20 ms grid, the one its microphone
  frames run on (audio that arrives plays from the next slot, after what is queued);
  with `--via sip`, the same served gateway's SIP listener (UDP on 127.0.0.1) and a SIP
  phone (`tests/kit/clients/sip_line.py`): INVITE offering PCMU, RTP both ways on its
  own 20 ms clock, what it receives played by RTP timestamp through a 40 ms jitter
  buffer, the same echo, BYE at the end (SIP has no `clear` or marks: the gateway stops
  sending, and what arrived plays);
- the live call's recording replayed (`replay --agent-channel`, with its media timeline).

Times are on the call's clock: the live call's from its recording (each caller frame's
arrival is there, so a moment of the caller channel maps onto the call's clock), replay's
from the virtual clock. Per flow: the reply's start, the audible onset, pause and
interrupt latencies, resume after the sound's end, in all three; per split the same
figures as benchmarks/bargein_calls.py for replay and live side by side.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.*

from tests.kit.bargein_call_flows import (  # noqa: E402
    NONSPEECH,
    Calibration,
    CallFlow,
    Outcome,
    build_call_flows,
    calibrate,
    run_call_flow,
)
from tests.kit.live_flows import CALLS, live_flow, served  # noqa: E402


def pick(flows: list[CallFlow], n: int) -> list[CallFlow]:
    """About half real barge-ins (first and later replies), a quarter backchannels, the
    rest non-speech and echo alone, spread evenly over each group."""
    groups = [
        [f for f in flows if f.kind == "speech"],
        [f for f in flows if f.kind == "backchannel"],
        [f for f in flows if f.kind in NONSPEECH],
        [f for f in flows if f.kind == "echo"],
    ]
    want = [max(1, n // 2), max(1, n // 4), max(1, n // 8)]
    want.append(max(1, n - sum(want)))
    out = []
    for group, k in zip(groups, want, strict=True):
        k = min(k, len(group))
        idx = np.linspace(0, len(group) - 1, k).round().astype(int) if k else []
        out += [group[i] for i in idx]
    return out


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.0f}"


def _line(tag: str, o: Outcome) -> str:
    if not o.ok:
        return f"    {tag:7s} {o.problem}"
    rel = o.reply_start_ms
    return (f"    {tag:7s} reply {rel:7.0f}  pauses {[round(t - rel) for t in o.pauses]} "
            f"resumes {[round(t - rel) for t, _ in o.resumes]} interrupts "
            f"{[round(t - rel) for t in o.interrupts]} | pause {_fmt(o.pause_latency_ms)} "
            f"interrupt {_fmt(o.interrupt_latency_ms)} resume-after-end "
            f"{_fmt(o.resume_after_end_ms)}")


def _stats(v: list[float]) -> str:
    if not v:
        return "-"
    a = np.array(v)
    return f"p50 {np.median(a):.0f} p90 {np.percentile(a, 90):.0f} max {a.max():.0f} ms"


def summary(tag: str, outs: list[Outcome]) -> None:
    ok = [o for o in outs if o.ok]
    speech = [o for o in ok if o.flow.kind == "speech"]
    back = [o for o in ok if o.flow.kind == "backchannel"]
    other = [o for o in ok if o.flow.kind in NONSPEECH or o.flow.kind == "echo"]
    pl = [o.pause_latency_ms for o in speech if o.pause_latency_ms is not None]
    il = [o.interrupt_latency_ms for o in speech if o.interrupt_latency_ms is not None]
    ra = [o.resume_after_end_ms for o in back
          if not o.interrupts and o.resume_after_end_ms is not None]
    print(f"  {tag:14s} confirmed {sum(o.caught for o in speech)}/{len(speech)}; pause "
          f"{_stats(pl)}; interrupt {_stats(il)}; backchannels resumed "
          f"{sum(not o.interrupts for o in back)}/{len(back)} (end -> resume {_stats(ra)}); "
          f"non-speech/echo: paused {sum(bool(o.pauses) for o in other)}/{len(other)}, "
          f"interrupted {sum(bool(o.interrupts) for o in other)}/{len(other)}"
          f"{'' if len(ok) == len(outs) else f'; {len(outs) - len(ok)} did not run'}")


async def run(splits: list[str], n: int, show: bool, cal: Calibration, keep: str = "",
              only: tuple[str, ...] = (), via: str = "twilio") -> None:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = keep or scratch
        Path(tmp).mkdir(parents=True, exist_ok=True)
        async with served(tmp, via) as (_, router, port):
            for split in splits:
                flows = pick(build_call_flows(split), n)
                if only:
                    flows = [f for f in build_call_flows(split) if f.name in only]
                rows: list[tuple[Outcome, Outcome, Outcome]] = []
                diffs: dict[str, list[float]] = {"pause": [], "interrupt": [], "reply": []}
                for f in flows:
                    rep = await asyncio.to_thread(run_call_flow, f, cal, True)
                    if not rep.ok:
                        print(f"  {f.name}: replay setup: {rep.problem}")
                        continue
                    live, again, wav = await live_flow(port, router, Path(tmp), rep, via)
                    rows.append((rep, live, again))
                    pairs = (("pause", rep.pause_latency_ms, live.pause_latency_ms),
                             ("interrupt", rep.interrupt_latency_ms, live.interrupt_latency_ms))
                    for key, a, b in pairs if live.ok else ():
                        if a is not None and b is not None:
                            diffs[key].append(b - a)
                    if live.ok:
                        diffs["reply"].append(live.reply_start_ms - rep.reply_start_ms)
                    if show:
                        print(f"  {f.name}")
                        print(_line("replay", rep))
                        print(_line("live", live))
                        print(_line("re-play", again), flush=True)
                        if keep:
                            print(f"    recording {wav}")
                print(f"[{split}] {len(rows)} flows, replay / live over {via} / live "
                      "recording replayed")
                for rep, live, _ in rows:
                    if not live.ok:
                        print(f"  not compared: {rep.flow.name}: {live.problem}")
                same_rows = [r for r in rows if r[1].ok]
                summary("replay", [r[0] for r in same_rows])
                summary("live", [r[1] for r in same_rows])
                summary("rec replayed", [r[2] for r in same_rows])
                for key, v in diffs.items():
                    a = np.array(v) if v else np.zeros(1)
                    print(f"  live - replay, {key:9s}: median {np.median(a):+.0f} ms, "
                          f"range {a.min():+.0f} .. {a.max():+.0f} ms (n={len(v)})")
                same = sum(len(r[1].pauses) == len(r[2].pauses)
                           and all(abs(a - b) <= 20 for a, b in zip(r[1].pauses, r[2].pauses,
                                                                    strict=False))
                           and len(r[1].interrupts) == len(r[2].interrupts)
                           for r in rows)
                print(f"  live recording replayed: the same pauses and interrupts within a "
                      f"frame in {same}/{len(rows)} calls")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("splits", nargs="*", default=["dev", "holdout"])
    ap.add_argument("--n", type=int, default=16, help="flows per split")
    ap.add_argument("--list", action="store_true", help="print every flow")
    ap.add_argument("--keep", default="", help="keep the live calls' recordings here (each "
                    "replays with `atoms-gateway replay REC.wav --agent-channel`)")
    ap.add_argument("--via", choices=sorted(CALLS), default="twilio",
                    help="the live calls' protocol: Twilio Media Streams or SIP/RTP")
    ap.add_argument("--flows", default="", help="run these flows (comma-separated names, "
                    "as --list prints them) instead of --n picked ones")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    t0 = time.perf_counter()
    cal = calibrate()
    only = tuple(x for x in args.flows.split(",") if x)
    asyncio.run(run(args.splits, args.n, args.list, cal, args.keep, only, args.via))
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
