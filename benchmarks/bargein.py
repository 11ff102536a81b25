"""Barge-in benchmark: the detector frame by frame over the labelled set of tests/bargein_eval.py.

    .venv/bin/python -m benchmarks.bargein            # figures for dev, holdout, redraw
    .venv/bin/python -m benchmarks.bargein --sweep    # the grid that chose the defaults
    .venv/bin/python -m benchmarks.bargein --vad      # plain VAD and turn-end figures

Each case simulates the voice loop: per 20 ms tick the agent frame goes to agent_frame()
before the caller frame of the same tick goes to caller_frame(). The first WARMUP_MS of a
case is an earlier playout of the same call (echo only), then reset() as the loop does
when playout stops. Any interrupt before the speech onset (or in a non-speech case) is a
false interrupt. Latency is from the speech onset to the end of the frame that fired;
playout stops one frame later.
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass, replace

import numpy as np

from media.bargein import BargeInConfig, BargeInDetector
from media.frames import FRAME_MS, split_frames
from media.turn import TurnDetector
from media.vad import Vad, VadConfig
from tests.bargein_eval import Case, build_cases

SPLITS = ("dev", "holdout", "redraw")


@dataclass
class Result:
    detected: int
    speech: int
    false: list[str]
    nonspeech: int
    latencies: list[float]
    cpu_us: list[float]
    missed: list[str]


def run_case(case: Case, config: BargeInConfig, cpu: list[float] | None = None) -> int | None:
    """Index of the frame on which the detector fired (None if it never did)."""
    det = BargeInDetector(config)
    warm = case.warmup_ms // FRAME_MS
    fired = None
    for i, (ref, mic) in enumerate(zip(split_frames(case.agent), split_frames(case.caller),
                                       strict=True)):
        if i == warm:
            det.reset()
        t0 = time.perf_counter()
        det.agent_frame(ref)
        hit = det.caller_frame(mic)
        if cpu is not None:
            cpu.append((time.perf_counter() - t0) * 1e6)
        if hit and fired is None:
            fired = i
    return fired


def evaluate(cases: list[Case], config: BargeInConfig) -> Result:
    res = Result(0, 0, [], 0, [], [], [])
    for case in cases:
        fired = run_case(case, config, res.cpu_us)
        t = None if fired is None else (fired + 1) * FRAME_MS
        if case.is_speech:
            res.speech += 1
            if t is None:
                res.missed.append(case.name)
            elif t < case.onset_ms:
                res.false.append(case.name)
            else:
                res.detected += 1
                res.latencies.append(t - case.onset_ms)
        else:
            res.nonspeech += 1
            if t is not None:
                res.false.append(case.name)
    return res


def report(split: str, res: Result) -> None:
    lat = np.array(res.latencies) if res.latencies else np.array([np.nan])
    cpu = np.array(res.cpu_us)
    print(f"[{split}] speech detected {res.detected}/{res.speech} "
          f"({100 * res.detected / res.speech:.1f} %); false interrupts {len(res.false)}/"
          f"{res.speech + res.nonspeech} cases "
          f"({len([n for n in res.false if not n.startswith('speech')])}/{res.nonspeech} "
          f"non-speech, {len([n for n in res.false if n.startswith('speech')])} before onset)")
    print(f"  latency onset->interrupt p50 {np.percentile(lat, 50):.0f} ms, p95 "
          f"{np.percentile(lat, 95):.0f} ms, max {lat.max():.0f} ms; onset->playout stopped "
          f"p50 {np.percentile(lat, 50) + FRAME_MS:.0f} ms, p95 "
          f"{np.percentile(lat, 95) + FRAME_MS:.0f} ms")
    print(f"  CPU per frame (agent_frame + caller_frame): mean {cpu.mean():.0f} us, "
          f"p50 {np.percentile(cpu, 50):.0f} us, p99 {np.percentile(cpu, 99):.0f} us "
          f"over {len(cpu)} frames")
    if res.missed:
        print(f"  missed: {', '.join(res.missed)}")
    if res.false:
        print(f"  false: {', '.join(res.false)}")


# -- the sweep that chose the defaults --------------------------------------------------------

def features(cases: list[Case]) -> list[tuple[Case, np.ndarray]]:
    """Per-frame features with every gate open, so decisions can be replayed offline."""
    open_cfg = BargeInConfig(min_level_dbfs=-1e9, echo_margin_db=-1e9)
    out = []
    for case in cases:
        det = BargeInDetector(open_cfg)
        rows = []
        for ref, mic in zip(split_frames(case.agent), split_frames(case.caller), strict=True):
            det.agent_frame(ref)
            det.caller_frame(mic)
            f = det.last
            assert f is not None
            rows.append((f.level_dbfs, f.guard_db, f.voiced_vad, f.periodicity,
                         f.stationarity, f.peakiness))
        out.append((case, np.array(rows, float)))
    return out


def replay(feats: list[tuple[Case, np.ndarray]], cfg: BargeInConfig) -> tuple[int, int, list]:
    """(misses, false interrupts, latencies) of `cfg`'s decision rule on recorded features."""
    miss = false = 0
    lat = []
    k = np.ones(cfg.window, int)
    for case, f in feats:
        active = (f[:, 0] >= cfg.min_level_dbfs) & (f[:, 1] >= cfg.echo_margin_db)
        tonal = active & ((f[:, 4] >= cfg.tonal_stationarity) | (f[:, 5] >= cfg.tonal_peakiness))
        voiced = active & (f[:, 2] > 0) & (f[:, 3] >= cfg.min_periodicity) & ~tonal
        warm = case.warmup_ms // FRAME_MS
        voiced[:warm] = False
        tonal[:warm] = False
        cv = np.convolve(voiced, k)[: len(f)]
        ct = np.convolve(tonal, k)[: len(f)]
        idx = np.flatnonzero((cv >= cfg.min_voiced) & (ct * cfg.tonal_ratio <= cv))
        t = (idx[0] + 1) * FRAME_MS if len(idx) else None
        if case.is_speech:
            if t is None:
                miss += 1
            elif t < case.onset_ms:
                false += 1
            else:
                lat.append(t - case.onset_ms)
        elif t is not None:
            false += 1
    return miss, false, lat


def sweep() -> None:
    dev = features(build_cases("dev"))
    held = features(build_cases("holdout"))
    grid = {
        "echo_margin_db": [9.0, 12.0, 15.0],
        "min_periodicity": [0.7, 0.75, 0.8, 0.85],
        "tonal_stationarity": [0.93, 0.95, 0.97],
        "tonal_peakiness": [0.97, 0.98, 0.99],
        "window": [6, 8, 10],
        "min_voiced": [3, 4, 5],
        "tonal_ratio": [1.0, 2.0, 3.0],
    }
    rows = []
    for values in itertools.product(*grid.values()):
        cfg = replace(BargeInConfig(), **dict(zip(grid, values, strict=True)))
        if cfg.min_voiced > cfg.window:
            continue
        miss, false, lat = replay(dev, cfg)
        if not lat:
            continue
        p50, p95 = np.percentile(lat, 50), np.percentile(lat, 95)
        rows.append((1000 * (miss + false) + p50 + p95, miss, false, p50, p95, values))
    rows.sort(key=lambda r: r[0])
    print("rank: dev misses/false p50/p95 | holdout misses/false p50/p95 | " + ", ".join(grid))
    for n, (_, miss, false, p50, p95, values) in enumerate(rows[:12], 1):
        cfg = replace(BargeInConfig(), **dict(zip(grid, values, strict=True)))
        hm, hf, hl = replay(held, cfg)
        print(f"{n:2d}: {miss}/{false} {p50:.0f}/{p95:.0f} | {hm}/{hf} "
              f"{np.percentile(hl, 50):.0f}/{np.percentile(hl, 95):.0f} | {values}")


# -- plain VAD and turn end -------------------------------------------------------------------

def vad_figures() -> None:
    cases = build_cases("dev")
    speech = [c for c in cases if c.is_speech]
    other = [c for c in cases if not c.is_speech]
    print("plain VAD on the caller channel without echo (agent silent):")
    for aggr, start_ms in itertools.product(range(4), (40, 60, 100)):
        lat, false_starts, noise_starts = [], 0, 0
        for c in speech:
            vad = Vad(VadConfig(aggressiveness=aggr, start_ms=start_ms))
            early = False
            for i, frame in enumerate(split_frames(c.clean)):
                if vad.process(frame) == "start":
                    t = (i + 1) * FRAME_MS
                    if t < c.onset_ms:
                        early = True
                    else:
                        lat.append(t - c.onset_ms)
                        break
            false_starts += early
        for c in other:
            vad = Vad(VadConfig(aggressiveness=aggr, start_ms=start_ms))
            if any(vad.process(f) == "start" for f in split_frames(c.clean)):
                noise_starts += 1
        print(f"  aggressiveness {aggr} start_ms {start_ms:3d}: started {len(lat)}/{len(speech)}"
              f", p50 {np.percentile(lat, 50):.0f} ms p95 {np.percentile(lat, 95):.0f} ms; "
              f"cases with a start before onset {false_starts}; non-speech cases that start "
              f"{noise_starts}/{len(other)}")
    gaps = []
    for c in speech:
        vad = Vad(VadConfig())
        voiced = np.array([vad.is_voiced(f) for f in split_frames(c.clean)])
        on = int(c.onset_ms // FRAME_MS)
        idx = np.flatnonzero(voiced[on:])
        runs = np.diff(idx) - 1 if len(idx) > 1 else np.array([0])
        gaps.append(int(runs.max()) * FRAME_MS)
    print(f"  longest unvoiced gap inside an utterance (aggressiveness 2): p50 "
          f"{np.percentile(gaps, 50):.0f} ms, p95 {np.percentile(gaps, 95):.0f} ms, "
          f"max {max(gaps)} ms")
    ends, extra, delays = 0, 0, []
    for c in speech:
        vad, turn = Vad(VadConfig()), TurnDetector()
        voiced_last = 0
        # the cases stop 1.2 s after onset, mid-sentence for some; add 1.5 s of silence
        pcm = np.concatenate((c.clean, np.zeros(24_000, np.int16)))
        fired = []
        for i, f in enumerate(split_frames(pcm)):
            vad.process(f)
            if vad.voiced:
                voiced_last = i
            if turn.process(vad.speaking):
                fired.append(i)
        ends += len(fired) > 0
        extra += max(0, len(fired) - 1)
        if fired:
            delays.append((fired[-1] - voiced_last) * FRAME_MS)
    print(f"  turn end with defaults: {ends}/{len(speech)} utterances ended, {extra} extra "
          f"turn ends inside an utterance; last voiced frame -> turn end "
          f"{np.percentile(delays, 50):.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sweep", action="store_true", help="grid search over the thresholds")
    ap.add_argument("--vad", action="store_true", help="plain VAD and turn-end figures")
    ap.add_argument("--split", choices=SPLITS, action="append")
    args = ap.parse_args()
    if args.sweep:
        sweep()
        return
    if args.vad:
        vad_figures()
        return
    for split in args.split or SPLITS:
        report(split, evaluate(build_cases(split), BargeInConfig()))


if __name__ == "__main__":
    main()
