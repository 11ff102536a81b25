"""CPU cost of each per-frame part of the voice loop, in microseconds per 20 ms frame.

    .venv/bin/python benchmarks/frame_costs.py

The first barge-in row is the easy line: the agent's audio back 10 dB down with no delay,
never anyone talking over it (the detector's steady state). The second is a phone line as
the detector meets it: the echo 40 ms late and 10 dB down over a -65 dBFS noise floor, and
the caller talking over the agent every 4 s, each time during a new reply (`reset()` half a
second before: the detector decides once per reply); the echo canceller locks on, and the
explained-residual test and the frame classification run. A fresh detector each run.
Each row is the best of 3 runs (other processes only add time).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.kit.speech

from media.bargein import BargeInDetector  # noqa: E402
from media.codecs import ulaw_decode, ulaw_encode  # noqa: E402
from media.playout import PlayoutBuffer  # noqa: E402
from media.resample import StreamResampler  # noqa: E402
from media.turn import TurnDetector  # noqa: E402
from media.vad import Vad  # noqa: E402
from tests.kit.speech import speech, trim_silence  # noqa: E402


def timed(name: str, frames: list[np.ndarray], fn: Callable[[np.ndarray], object]) -> None:
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for f in frames:
            fn(f)
        best = min(best, (time.process_time() - c0) / len(frames))
    print(f"{name:38s} {best * 1e6:7.1f} µs/frame  ({best * 50 * 1000:.2f} CPU-ms per call-second)")


def phone_line() -> tuple[list[np.ndarray], list[np.ndarray], set[int]]:
    """Agent frames and the caller frames heard meanwhile on a phone line (the echo 40 ms
    late and 10 dB down, a -65 dBFS noise floor, the caller talking over every 4 s), and
    the frames before which a new reply starts."""
    agent = np.concatenate([trim_silence(speech(text)) for text in (
        "Your order was shipped yesterday and should arrive on Thursday.",
        "If anything is missing, I can open a ticket for you right away.",
        "Before we start, could you tell me your reference number please?")])
    caller = trim_silence(speech("Sorry, I need to change the date.", voice="en+f3"))
    mic = np.zeros(len(agent))
    mic[640:] = agent[:-640] * 10 ** (-10 / 20)
    talks = range(16000, len(agent) - len(caller), 4 * 16000)
    for t in talks:
        mic[t : t + len(caller)] += caller * 10 ** (-6 / 20)
    mic += np.random.default_rng(1).normal(0.0, 32768 * 10 ** (-65 / 20), len(mic))
    mic = np.clip(np.round(mic), -32768, 32767).astype(np.int16)
    n = len(agent) // 320
    return ([agent[i * 320 : (i + 1) * 320] for i in range(n)],
            [mic[i * 320 : (i + 1) * 320] for i in range(n)], {(t - 8000) // 320 for t in talks})


def timed_call(name: str, agent: list[np.ndarray], caller: list[np.ndarray],
               replies: set[int]) -> None:
    best = float("inf")
    for _ in range(3):
        det = BargeInDetector()
        hits = 0
        c0 = time.process_time()
        for i, (a, c) in enumerate(zip(agent, caller, strict=True)):
            if i in replies:
                det.reset()
            det.agent_frame(a, i * 0.02)
            hits += det.caller_frame(c, (i + 1) * 0.02)
        best = min(best, (time.process_time() - c0) / len(agent))
    print(f"{name:38s} {best * 1e6:7.1f} µs/frame  ({best * 50 * 1000:.2f} CPU-ms per call-second; "
          f"{hits} of {len(replies)} talk-overs detected)")


def main() -> None:
    argparse.ArgumentParser(description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    pcm = speech("hello there, this is a test of how fast each part of the loop runs, "
                 "and it goes on for a while so that the numbers settle")
    frames = [pcm[i : i + 320] for i in range(0, len(pcm) - 320, 320)]
    echo = [(f * 0.3).astype(np.int16) for f in frames]
    det = BargeInDetector()
    pairs = iter(range(10**9))

    def bargein(f: np.ndarray) -> None:
        i = next(pairs)
        det.agent_frame(f, i * 0.02)
        det.caller_frame(echo[i % len(echo)], (i + 1) * 0.02)

    timed("barge-in (agent + caller frame)", frames, bargein)
    timed_call("barge-in, phone line, caller talks over", *phone_line())
    timed("VAD", frames, Vad().process)
    turn = TurnDetector()
    timed("turn end", frames, lambda f: turn.process(True))
    down, up = StreamResampler(16000, 8000), StreamResampler(8000, 16000)
    timed("resample 16k -> 8k", frames, down.process)
    timed("resample 8k -> 16k", frames, lambda f: up.process(f[:160]))
    timed("G.711 mu-law encode + decode (8 kHz)", frames, lambda f: ulaw_decode(ulaw_encode(f[:160])))
    playout = PlayoutBuffer()

    def play(f: np.ndarray) -> None:
        playout.push("u", f, final=False)
        playout.pop()

    timed("playout push + pop", frames, play)


if __name__ == "__main__":
    main()
