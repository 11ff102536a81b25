"""CPU cost of the voice loop alone, and replay speed.

    .venv/bin/python benchmarks/voice_loop.py [SECONDS]

One call's loop (mu-law decode + resample in, VAD, barge-in, turn end, playout,
resample + mu-law encode out) runs under the virtual clock on a recording of
SECONDS (speech, silence, speech over the agent). STT and TTS are stubbed (a
canned answer, instant audio) so the figure is the loop's own; the session is the
real AgentSession with the demo agent. Prints CPU-ms per call-second and replay
speed as a multiple of real time.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.speechgen

from gateway.audio_edge import AudioEdge
from gateway.testing import replay_async
from media.codecs import WireFormat
from media.stt import Transcript
from tests.speechgen import speech, trim_silence


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


class InstantTTS:
    """Returns a pre-made tone-like voice at once: 60 ms of audio per character."""

    sample_rate = 16000

    def check(self) -> None:
        return None

    async def synthesize(self, text: str):
        n = 16 * 60 * len(text)
        t = np.arange(n) / 16000
        yield (3000 * np.sin(2 * np.pi * 180 * t) * (1 + np.sin(2 * np.pi * 4 * t))).astype(
            np.int16)


def recording(seconds: float) -> np.ndarray:
    words = trim_silence(speech("tell me a story please, I would like to hear one"))
    out = np.zeros(int(seconds * 16000), dtype=np.int16)
    t = 3.0
    while t + len(words) / 16000 < seconds:
        s = int(t * 16000)
        out[s : s + len(words)] = words
        t += len(words) / 16000 + 6.0
    return out


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    pcm = recording(seconds)
    sender = AudioEdge(WireFormat("pcmu", 8000))  # the phone side, not timed
    wire = [sender.encode(f) for f in np.split(pcm[: len(pcm) // 320 * 320], len(pcm) // 320)]

    asyncio.run(replay_async(pcm[:16000], stt=CannedSTT(), tts=InstantTTS()))  # warm up

    loop_cpu = [0.0]
    from gateway.call import Call

    for name in ("caller_frame", "output_tick"):
        original = getattr(Call, name)

        async def timed(self, *args, _original=original):
            c0 = time.process_time()
            await _original(self, *args)
            loop_cpu[0] += time.process_time() - c0

        setattr(Call, name, timed)

    cpu0 = time.process_time()
    inbound = AudioEdge(WireFormat("pcmu", 8000))  # the gateway side: timed
    caller = np.concatenate([f for payload in wire for f in inbound.decode(payload)])
    t0 = time.perf_counter()
    result = asyncio.run(replay_async(caller, stt=CannedSTT(), tts=InstantTTS()))
    wall = time.perf_counter() - t0
    outbound = AudioEdge(WireFormat("pcmu", 8000))
    for i in np.flatnonzero(result.played):
        outbound.encode(result.agent[i * 320 : (i + 1) * 320])
    cpu = time.process_time() - cpu0

    audio_s = result.duration_ms / 1000
    played = int(result.played.sum()) * 0.02
    print(f"call length: {audio_s:.1f} s (agent audio played: {played:.1f} s, "
          f"interrupts: {len(result.interrupts)})")
    print(f"CPU per call-second, whole replay: {cpu * 1000 / audio_s:.2f} ms "
          "(wire codec + resampling both ways, VAD, barge-in, turn end, playout, session, "
          "replay harness; STT/TTS stubbed)")
    print(f"CPU per call-second, voice loop per-frame work (caller_frame + output_tick, "
          f"incl. session delivery): {loop_cpu[0] * 1000 / audio_s:.2f} ms")
    print(f"replay speed: {audio_s / wall:.0f}x real time")


if __name__ == "__main__":
    main()
