"""How long starting an espeak-ng child stops the event loop, by the gateway's size.

    .venv/bin/python benchmarks/process_start.py [--mb 50,200,400]

The gateway grows by about 0.5 MB per call; while a child starts, the loop (every call's
audio) waits. For each resident size the script grows itself to it (touched numpy
arrays), then times 20 starts of `espeak-ng --version` on one core (`taskset -c 0`) with
uvloop's `asyncio.create_subprocess_exec` (libuv: fork) and with `runtime.spawn` (vfork),
and prints the median and worst time the loop was held.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.spawn import spawn  # noqa: E402

ARGV = ["espeak-ng", "--version"]
STARTS = 20


async def held_ms(how: str) -> list[float]:
    out = []
    for _ in range(STARTS):
        t0 = time.perf_counter()
        if how == "fork":
            proc = await asyncio.create_subprocess_exec(*ARGV, stdout=asyncio.subprocess.PIPE)
            out.append((time.perf_counter() - t0) * 1000)
            await proc.communicate()
        else:
            child = await spawn(ARGV)
            out.append((time.perf_counter() - t0) * 1000)
            await child.stdout.read()
            await child.wait()
    return sorted(out)


async def main(sizes: list[int]) -> None:
    ballast: list[np.ndarray] = []
    for mb in sizes:
        while len(ballast) < mb:
            ballast.append(np.ones(1 << 17))  # 1 MB, touched
        for how, name in (("fork", "uvloop (libuv fork)"), ("vfork", "runtime.spawn (vfork)")):
            t = await held_ms(how)
            sys.stdout.write(f"RSS +{mb} MB  {name:22s} loop held: median {t[len(t) // 2]:.2f} ms,"
                             f" worst {t[-1]:.2f} ms\n")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", default="50,200,400")
    args = parser.parse_args()
    os.sched_setaffinity(0, {0})
    uvloop.run(main([int(x) for x in args.mb.split(",")]))
