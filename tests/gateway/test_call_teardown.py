"""An ended call is freed by reference counting, not left for the cyclic garbage collector:
a full collection over hundreds of ended calls' buffers paused every live call for
68-108 ms at 300-400 SIP calls (benchmarks/README.md), and `serve` now runs full
collections only every few minutes (gateway.gc_pacing)."""

import asyncio
import gc
import weakref

import numpy as np

from gateway.app import AtomsApp
from gateway.media_tick import MediaTick
from media.frames import SAMPLE_RATE
from runtime.clock import VirtualClock
from tests.gateway.lines import TickedLine, run_until
from tests.kit.speech import speech, trim_silence


async def _call(app: AtomsApp, pcm: np.ndarray) -> tuple[weakref.ref, weakref.ref, TickedLine]:
    clock = VirtualClock()
    tick = MediaTick(clock)
    line = TickedLine(tick)
    call = await app.open_call(line, call_id="teardown", clock=clock)
    session = weakref.ref(call.session)
    line.join(call)
    line.speak(pcm)
    await run_until(clock, call, len(pcm) / SAMPLE_RATE)
    await app.end_call(call, "caller hung up")
    line.leave()
    await tick.stop()
    return weakref.ref(call), session, line


async def test_ended_call_is_freed_without_the_cyclic_collector() -> None:
    app = AtomsApp()  # the demo agent: greeting, barge-in, a turn, the reply
    app.load_engines()
    words = trim_silence(speech("what time is it"))
    silence = np.zeros(SAMPLE_RATE, dtype=np.int16)
    pcm = np.concatenate([silence, words, silence, silence])
    gc.collect()
    gc.disable()
    try:
        ref, session, line = await _call(app, pcm)
        for _ in range(20):
            await asyncio.sleep(0)
        assert line.frames > 0  # the agent spoke
        assert ref() is None, [type(r).__name__ for r in gc.get_referrers(ref())]
        # the agent graph too (Sink -> session, child -> parent, the start-up cycle check
        # were reference cycles): nothing of the call is left for a full collection
        assert session() is None, [type(r).__name__ for r in gc.get_referrers(session())]
    finally:
        gc.enable()
