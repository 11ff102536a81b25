"""CPU cost of each per-frame part of the voice loop, in microseconds per 20 ms frame.

    .venv/bin/python benchmarks/frame_costs.py
"""

from __future__ import annotations

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
from tests.kit.speech import speech  # noqa: E402


def timed(name: str, frames: list[np.ndarray], fn: Callable[[np.ndarray], object]) -> None:
    best = float("inf")
    for _ in range(3):
        c0 = time.process_time()
        for f in frames:
            fn(f)
        best = min(best, (time.process_time() - c0) / len(frames))
    print(f"{name:38s} {best * 1e6:7.1f} µs/frame  ({best * 50 * 1000:.2f} CPU-ms per call-second)")


def main() -> None:
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
