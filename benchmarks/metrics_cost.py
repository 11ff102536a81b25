"""What observability costs a call, measured piece by piece (CPU time, one thread).

    .venv/bin/python benchmarks/metrics_cost.py [--calls 200] [--turn-every 5] [--scrape-every 15]

The per-frame hooks the voice loop calls (`CallTurns.detector_frame` on each caller frame
while the agent plays, the `awaiting_reply` test on each agent frame), a finished turn
through the Prometheus sink and the conversation log (at WARNING, as a busy server runs it,
and at INFO to a null handler), the media tick's lag observation (once per tick, not per
call), and a scrape of `/metrics` with that many calls up. Then the share of one core
these take at `--calls` calls, each taking a turn every `--turn-every` seconds, every
frame counted (an upper bound: the detector hook runs only while the agent plays).
"""

from __future__ import annotations

import argparse
import logging
import time
from types import SimpleNamespace

from gateway.convlog import ConversationLog
from gateway.metrics import Metrics
from gateway.turns import CallTurns, Turn


def per_call(fn, n: int) -> float:
    """CPU seconds per call of `fn()`, the best of 5 rounds of `n`."""
    best = float("inf")
    for _ in range(5):
        t = time.process_time()
        for _ in range(n):
            fn()
        best = min(best, (time.process_time() - t) / n)
    return best


def a_turn(i: int) -> Turn:
    return Turn(i, caller_started=1.0, caller_stopped=2.0, turn_end=2.4, transcript_at=2.45,
                caller_text="what time is it", caller_said_at=2.45,
                agent_text="It is twelve o'clock.", first_text_at=2.5,
                llm_first_token_s=0.3, tts_ready_at=2.52, first_audio_out=2.53,
                heard_text="It is twelve o'clock.", pauses=[0.12], ended_at=4.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--turn-every", type=float, default=5.0)
    parser.add_argument("--scrape-every", type=float, default=15.0)
    args = parser.parse_args()

    transports = [("twilio", SimpleNamespace(dropped=0, dropped_in=0))
                  for _ in range(args.calls)]
    metrics = Metrics(lambda: transports)
    quiet = ConversationLog()  # gateway.conversation at WARNING: the line is not built
    logging.getLogger("gateway.conversation").setLevel(logging.WARNING)
    loud_logger = logging.getLogger("bench.conversation")
    loud_logger.propagate = False
    loud_logger.addHandler(logging.NullHandler())
    loud_logger.setLevel(logging.INFO)
    loud = ConversationLog(logger=loud_logger)
    call = CallTurns("CA-bench")
    call.transport = "twilio"
    turn = a_turn(1)

    bargein = SimpleNamespace(last=SimpleNamespace(active=True))

    def detector_hook(arrived: float | None = None, now: float = 1.0) -> None:
        # the statement in Call.caller_frame, as it runs there
        last = bargein.last
        call.detector_frame(last is not None and last.active,
                            (now if arrived is None else arrived) - 0.0 - 0.02)

    detector = per_call(detector_hook, 200_000)
    awaiting = per_call(lambda: call.awaiting_reply, 200_000)
    sink = per_call(lambda: metrics.turn_done(call, turn), 20_000)
    ended = per_call(lambda: metrics.call_ended(call, "completed"), 20_000)
    log_quiet = per_call(lambda: quiet.turn_done(call, turn), 20_000)
    log_info = per_call(lambda: loud.turn_done(call, turn), 5_000)
    tick = per_call(lambda: metrics.observe_tick_lag(0.0012), 100_000)
    scrape = per_call(metrics.exposition, 50)

    n = args.calls
    frames = n * 50  # caller frames a second, and as many agent frames
    turns = n / args.turn_every
    rows = [
        ("per caller frame: detector hook", detector, frames),
        ("per agent frame: awaiting_reply", awaiting, frames),
        ("per turn: metrics sink", sink, turns),
        ("per turn: conversation log (WARNING)", log_quiet, turns),
        ("per call end: calls_total", ended, n / 60.0),  # (calls of a minute)
        ("per tick: tick lag", tick, 50.0),
        (f"per scrape ({n} calls up)", scrape, 1.0 / args.scrape_every),
    ]
    print(f"{n} calls, a turn every {args.turn_every:g} s each, a scrape every "
          f"{args.scrape_every:g} s")
    total = 0.0
    for name, cost, per_s in rows:
        share = cost * per_s
        total += share
        print(f"{name:<40} {cost * 1e6:9.2f} us  x {per_s:8.1f}/s = {100 * share:6.3f} % of a core")
    print(f"{'total':<40} {'':>36}   {100 * total:6.3f} % of a core")
    print(f"(a conversation line at INFO costs {log_info * 1e6:.1f} us a turn: "
          f"{100 * log_info * turns:.3f} % more)")


if __name__ == "__main__":
    main()
