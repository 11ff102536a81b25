import asyncio

import numpy as np

from media.frames import FRAME_SAMPLES, FrameChunker, rms_dbfs, split_frames
from runtime.clock import VirtualClock


def test_chunker_emits_exact_frames_and_keeps_remainder():
    ch = FrameChunker()
    out = ch.push(np.arange(500, dtype=np.int16))
    assert [len(f) for f in out] == [FRAME_SAMPLES]
    out = ch.push(np.arange(200, dtype=np.int16))
    assert [len(f) for f in out] == [FRAME_SAMPLES]

    tail = ch.flush()
    assert len(tail) == 1 and len(tail[0]) == FRAME_SAMPLES
    assert int(tail[0][59]) == 199 and int(tail[0][60]) == 0


def test_chunker_preserves_sample_order():
    ch = FrameChunker()
    data = np.arange(3 * FRAME_SAMPLES, dtype=np.int16)
    frames = ch.push(data[:100]) + ch.push(data[100:700]) + ch.push(data[700:])
    assert np.array_equal(np.concatenate(frames), data)


def test_split_frames_pads_tail_and_rms():
    frames = split_frames(np.ones(700, dtype=np.int16))
    assert len(frames) == 3 and frames[-1][59] == 1 and frames[-1][60] == 0
    assert rms_dbfs(np.zeros(10, dtype=np.int16)) == float("-inf")
    assert abs(rms_dbfs(np.full(100, 32767, dtype=np.int16))) < 0.01


async def test_virtual_clock_wakes_sleepers_in_order_without_real_time():
    clock = VirtualClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, dt: float) -> None:
        await clock.sleep(dt)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(sleeper("b", 2.0)), asyncio.create_task(sleeper("a", 1.0))]
    await clock.run_for(5.0)
    await asyncio.gather(*tasks)
    assert woke == [("a", 1.0), ("b", 2.0)]
    assert clock.now() == 5.0
