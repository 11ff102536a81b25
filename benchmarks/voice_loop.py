"""CPU cost of the voice loop alone, and replay speed.

    .venv/bin/python benchmarks/voice_loop.py [SECONDS]

One call's loop (mu-law decode + resample in, VAD, barge-in, turn end, playout,
resample + mu-law encode out) runs under the virtual clock on a recording of
SECONDS (speech, silence, speech over the agent). The line is a phone line: a -65 dBFS
noise floor, and the agent's audio echoed back 10 dB down 40 ms later, so the barge-in
detector's echo canceller works as on a real call. STT is stubbed (a canned answer);
speech is espeak-ng behind the TTS cache (synthesized in child processes, each text once),
so the figure is the loop's own; the session is the real AgentSession with the demo agent.
(A tone-like stand-in voice is not used: its echo, a steady 180 Hz buzz, defeats the
echo canceller's delay search and interrupts the agent; real voices, espeak-ng and piper,
do not, see tests/gateway/test_call.py.) Prints CPU-ms per call-second and replay
speed as a multiple of real time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.kit.speech

from gateway.audio_edge import AudioEdge
from gateway.testing import replay_async
from media.codecs import WireFormat
from media.stt import Transcript
from media.tts.cache import CachedTTS
from media.tts.espeak import EspeakTTS
from tests.kit.speech import speech, trim_silence

RUNS = 3


class CannedSTT:
    """Says 'tell me a story' at every turn end, costs nothing per frame."""

    def new_stream(self) -> CannedSTT:
        return self

    def feed(self, frame: np.ndarray) -> list[Any]:
        return []

    def end_of_turn(self) -> Transcript:
        return Transcript("tell me a story", True)

    def close(self) -> None:
        return None

    def check(self) -> None:
        return None


def recording(seconds: float) -> np.ndarray:
    words = trim_silence(speech("tell me a story please, I would like to hear one"))
    out = np.zeros(int(seconds * 16000), dtype=np.int16)
    t = 3.0
    while t + len(words) / 16000 < seconds:
        s = int(t * 16000)
        out[s : s + len(words)] = words
        t += len(words) / 16000 + 6.0
    noise = np.random.default_rng(1).normal(0.0, 32768 * 10 ** (-65 / 20), len(out))
    return np.clip(out + np.round(noise), -32768, 32767).astype(np.int16)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    pcm = recording(seconds)
    sender = AudioEdge(WireFormat("pcmu", 8000))  # the phone side, not timed
    wire = [sender.encode(f) for f in np.split(pcm[: len(pcm) // 320 * 320], len(pcm) // 320)]

    tts = CachedTTS(EspeakTTS())
    asyncio.run(replay_async(pcm, stt=CannedSTT(), tts=tts))  # warm up: every text synthesized

    loop_cpu = [0.0]
    timed_calls = [0]
    from gateway.call import Call

    def timing(original: Any) -> Any:
        async def timed(self: Any, *args: Any) -> None:
            c0 = time.process_time()
            await original(self, *args)
            loop_cpu[0] += time.process_time() - c0
            timed_calls[0] += 1
        return timed

    for name in ("caller_frame", "output_tick"):
        setattr(Call, name, timing(getattr(Call, name)))
    timer_s = timer_overhead(timing, loop_cpu)

    runs = []
    for _ in range(RUNS):  # the same call each time; noise from other processes only adds
        loop_cpu[0] = 0.0
        timed_calls[0] = 0
        cpu0 = time.process_time()
        inbound = AudioEdge(WireFormat("pcmu", 8000))  # the gateway side: timed
        caller = np.concatenate([f for payload in wire for f in inbound.decode(payload)])
        edge_cpu = time.process_time() - cpu0
        t0 = time.perf_counter()
        result = asyncio.run(replay_async(caller, stt=CannedSTT(), tts=tts,
                                          echo_db=-10, echo_ms=40))
        wall = time.perf_counter() - t0
        outbound = AudioEdge(WireFormat("pcmu", 8000))
        c_out = time.process_time()
        for i in np.flatnonzero(result.played):
            outbound.encode(result.agent[i * 320 : (i + 1) * 320])
        edge_cpu += time.process_time() - c_out
        cpu = time.process_time() - cpu0
        loop = loop_cpu[0] - timed_calls[0] * timer_s  # the timing itself is not the loop's
        runs.append((loop + edge_cpu, loop, edge_cpu, cpu, wall, result))
    _, loop, edge_cpu, cpu, wall, result = min(runs, key=lambda r: r[0])
    audio_s = result.duration_ms / 1000
    played = int(result.played.sum()) * 0.02
    print(f"call length: {audio_s:.1f} s (agent audio played: {played:.1f} s, "
          f"interrupts: {len(result.interrupts)})")
    print(f"CPU per call-second, whole replay: {cpu * 1000 / audio_s:.2f} ms "
          "(wire codec + resampling both ways, VAD, barge-in, turn end, playout, session, "
          "replay harness; STT stubbed, TTS cached)")
    print(f"CPU per call-second, voice loop per-frame work (caller_frame + output_tick: "
          f"VAD, barge-in, turn end, playout, session delivery): "
          f"{loop * 1000 / audio_s:.2f} ms")
    print(f"CPU per call-second, the audio edge (mu-law + resampling, in always, out while "
          f"the agent plays): {edge_cpu * 1000 / audio_s:.2f} ms")
    print(f"CPU per call-second, the loop with its audio edge: "
          f"{(loop + edge_cpu) * 1000 / audio_s:.2f} ms")
    print(f"replay speed: {audio_s / wall:.0f}x real time")
    print(f"(best of {RUNS} runs of the same call; timer overhead subtracted: "
          f"{timer_s * 1e6:.2f} us per timed call, {timed_calls[0]} calls)")


def timer_overhead(timing: Any, loop_cpu: list[float]) -> float:
    """CPU seconds the timing wrapper books for a call that does nothing (the clock reads
    and the extra coroutine): booked to the loop on every measured call, so subtracted."""

    class Empty:
        async def step(self) -> None:
            return None

    timed, empty = timing(Empty.step), Empty()

    async def run(n: int) -> float:
        before = loop_cpu[0]
        for _ in range(n):
            await timed(empty)
        booked = (loop_cpu[0] - before) / n
        loop_cpu[0] = before
        return booked

    return min(asyncio.run(run(20000)) for _ in range(3))


if __name__ == "__main__":
    main()
