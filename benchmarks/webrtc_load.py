"""WebRTC load: concurrent aiortc callers against the gateway pinned to one core.

    .venv/bin/python benchmarks/webrtc_load.py [--steps 5,10,20,30,40] [--window 10]

The gateway runs in a child process pinned to core 0 (`--server-core`) with an agent
that talks without pause (the demo story, synthesized once at start-up and sent as
`agent.audio`, so per-call TTS is left out), so every call has agent audio going out
all the time; callers send low-level noise (Opus, encoded once and replayed),
so the voice loop runs VAD and the barge-in detector on every frame without ever being
interrupted. The callers live in another child process pinned to core 1
(`--client-core`); they do not decode what they receive, they only timestamp each
arriving RTP frame, which keeps their own load small.

For each number of calls: connect them, settle for 3 s, then measure for `--window`
seconds:
- CPU-ms per call-second: the gateway's CPU time (all threads, plus espeak-ng child
  processes) over calls x seconds;
- where it goes: Opus encoding (aiortc encodes in the loop's thread pool: swresample to
  48 kHz stereo plus libopus) and Opus decoding (aiortc's decoder thread per call),
  measured with per-thread CPU clocks around each call; the rest is the event loop
  (voice loop, VAD, barge-in, STT, our resampling and track, RTP/SRTP/DTLS, asyncio);
- timing: the latest any outbound frame left `AgentAudioTrack.recv()` after its due time
  (server side), and the latest any frame arrived at a caller relative to its RTP
  timestamp (client side; each stream's steadiest offset as the reference).
The largest number of calls with no frame later than 40 ms on either measure is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LATE_LIMIT_MS = 40.0
SETTLE_S = 3.0


# -- gateway side ----------------------------------------------------------------------------
def serve(core: int) -> None:
    os.sched_setaffinity(0, {core})
    import logging

    import numpy as np
    from aiohttp import web
    from aiortc.codecs import opus

    from agent.events import SDKAgentAudioEvent
    from agent.nodes import OutputAgentNode
    from gateway.app import AtomsApp
    from gateway.demo import STORY
    from gateway.transports.webrtc import WEBRTC

    logging.basicConfig(level=logging.WARNING)
    cpu = {"encode": 0.0, "decode": 0.0, "frames_enc": 0, "frames_dec": 0}
    lock = threading.Lock()

    def timed(fn, key):
        def wrapper(*args, **kwargs):
            t0 = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.thread_time() - t0
                with lock:
                    cpu[key] += dt
                    cpu["frames_" + key[:3]] += 1
        return wrapper

    opus.OpusEncoder.encode = timed(opus.OpusEncoder.encode, "encode")
    opus.OpusDecoder.decode = timed(opus.OpusDecoder.decode, "decode")

    story: list[bytes] = []  # synthesized once at start-up (espeak-ng costs ~0.5% of RT)

    class Talker(OutputAgentNode):
        async def on_event(self, event) -> None:
            if event.type == "system.user.joined":
                for _ in range(4):
                    await self.send_event(SDKAgentAudioEvent(pcm=story[0], sample_rate=16000))

    async def setup(session) -> None:
        session.add_node(Talker(name="talker"))
        await session.start()
        await session.wait_until_complete()

    app = AtomsApp(setup_handler=setup, host="127.0.0.1", max_calls=1000)
    mark: dict[str, float] = {}

    def usage() -> float:
        s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
            resource.RUSAGE_CHILDREN)
        return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime

    import cProfile
    import pstats

    profiler = cProfile.Profile() if os.environ.get("WEBRTC_LOAD_PROFILE") else None

    async def reset(request: web.Request) -> web.Response:
        if profiler is not None:
            profiler.enable()
        mark.update(t=time.monotonic(), cpu=usage(), enc=cpu["encode"], dec=cpu["decode"])
        for peer in app.web[WEBRTC].peers.values():
            peer.track.max_lateness = 0.0
            peer.track.late_frames = 0
        return web.json_response({})

    async def stats(request: web.Request) -> web.Response:
        if profiler is not None:
            profiler.disable()
            print_areas(pstats.Stats(profiler))
        peers = list(app.web[WEBRTC].peers.values())
        return web.json_response({
            "seconds": time.monotonic() - mark["t"],
            "cpu_s": usage() - mark["cpu"],
            "encode_s": cpu["encode"] - mark["enc"],
            "decode_s": cpu["decode"] - mark["dec"],
            "calls": len(app.calls),
            "max_late_ms": 1000 * max((p.track.max_lateness for p in peers), default=0.0),
            "late_frames": sum(p.track.late_frames for p in peers),
            "resyncs": sum(p.track.resyncs for p in peers),
        })

    app.web.router.add_post("/bench/reset", reset)
    app.web.router.add_get("/bench/stats", stats)

    async def main() -> None:
        port = await app.start("127.0.0.1", 0)
        chunks = [c async for c in app.tts.synthesize(STORY)]
        story.append(np.concatenate(chunks).astype("<i2").tobytes())
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await app.stop(drain_timeout=0)

    asyncio.run(main())


AREAS = [("voice loop: barge-in detector", "media/bargein"), ("voice loop: VAD", "media/vad"),
         ("voice loop: other media", "/media/"), ("gateway (Call, WebRTC track)", "/gateway/"),
         ("aiortc RTP/RTCP/SCTP/DTLS (Python)", "aiortc/"), ("SRTP (pylibsrtp)", "pylibsrtp"),
         ("ICE (aioice)", "aioice"), ("asyncio + sockets", "asyncio"), ("numpy", "numpy"),
         ("webrtcvad", "webrtcvad"), ("soxr", "soxr")]


def print_areas(stats) -> None:
    """Main-thread profile grouped by area (own time of functions, like `tottime`)."""
    totals: dict[str, float] = {}
    for (filename, _line, name), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():
        where = "other (builtins, av, threads handoff)"
        for area, needle in AREAS:
            if needle in filename or (filename == "~" and needle.strip("/") in name):
                where = area
                break
        if "poll" in name and filename == "~":
            where = "idle (epoll)"
        totals[where] = totals.get(where, 0.0) + tt
    busy = sum(v for k, v in totals.items() if not k.startswith("idle"))
    print(f"main thread profile: {busy:.2f} s busy", file=sys.stderr)
    for k, v in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"  {k:<42} {v:6.2f} s", file=sys.stderr)


# -- caller side -----------------------------------------------------------------------------
def callers(url: str, count: int, window: float, core: int) -> None:
    os.sched_setaffinity(0, {core})
    import fractions

    import numpy as np
    from aiortc.codecs import opus
    from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
    from av import AudioFrame, Packet

    from tests.kit.rtc_peer import RtcCaller

    arrivals: dict[int, list[tuple[float, int]]] = {}

    class StampingDecoder:
        """Instead of decoding: note when each frame arrived, and its RTP timestamp."""

        def __init__(self) -> None:
            self.log: list[tuple[float, int]] = []
            arrivals[id(self)] = self.log

        def decode(self, encoded_frame):
            self.log.append((time.monotonic(), encoded_frame.timestamp))
            return []

    opus.OpusDecoder = StampingDecoder  # type: ignore[misc]
    import aiortc.codecs as codecs

    codecs.OpusDecoder = StampingDecoder  # type: ignore[attr-defined]

    # 1 s of noise at about -60 dBFS, Opus-encoded once, replayed by every caller
    enc = opus.OpusEncoder()
    rng = np.random.default_rng(1)
    packets: list[bytes] = []
    for i in range(50):
        pcm = (rng.standard_normal(960) * 30).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, i * 960
        frame.time_base = fractions.Fraction(1, 48000)
        payloads, _ = enc.encode(frame)
        packets += payloads

    class ReplayMic(MediaStreamTrack):
        kind = "audio"

        def __init__(self) -> None:
            super().__init__()
            self.n = 0
            self.t0: float | None = None

        async def recv(self) -> Packet:
            if self.readyState != "live":
                raise MediaStreamError
            loop = asyncio.get_running_loop()
            self.t0 = self.t0 or loop.time()
            wait = self.t0 + self.n * 0.02 - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            packet = Packet(packets[self.n % len(packets)])
            packet.pts, packet.time_base = self.n * 960, fractions.Fraction(1, 48000)
            self.n += 1
            return packet

    async def main() -> None:
        people = []
        for _ in range(count):
            c = RtcCaller(url, channel=False)
            sender = c.pc.getSenders()[0]
            c.mic.stop()
            mic = ReplayMic()
            sender.replaceTrack(mic)
            c.mic = mic  # type: ignore[assignment]
            people.append(c)
        for i in range(0, count, 10):
            await asyncio.gather(*(c.connect(timeout=30) for c in people[i : i + 10]))
        await asyncio.sleep(SETTLE_S)
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        t0 = time.monotonic()
        await asyncio.sleep(window)
        t1 = time.monotonic()
        worst = 0.0
        for log in arrivals.values():
            pts = [(t, ts) for t, ts in log if t0 <= t <= t1]
            if len(pts) < 10:
                continue
            t = np.array([p[0] for p in pts])
            ts = np.unwrap(np.array([p[1] for p in pts], dtype=np.float64), period=2**32)
            offset = t - (ts - ts[0]) / 48000.0
            worst = max(worst, float(offset.max() - np.percentile(offset, 5)))
        print(json.dumps({"client_max_late_ms": 1000 * worst,
                          "streams": sum(1 for v in arrivals.values() if v)}), flush=True)
        await asyncio.gather(*(c.close() for c in people), return_exceptions=True)

    asyncio.run(main())


# -- driver ----------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> None:
    import urllib.request

    me = [sys.executable, __file__]
    server = subprocess.Popen(me + ["--serve", "--server-core", str(args.server_core)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()  # type: ignore[union-attr]
        port = int(line.split()[1])
        url = f"http://127.0.0.1:{port}"
        print(f"gateway on core {args.server_core}, callers on core {args.client_core}, "
              f"window {args.window:.0f} s; {os.cpu_count()} cores")
        print(f"{'calls':>5} {'CPU ms/call-s':>13} {'opus enc':>8} {'opus dec':>8} "
              f"{'other':>6} {'core %':>6} {'srv late ms':>11} {'cli late ms':>11}  ok")
        best = 0
        for n in args.steps:
            cl = subprocess.Popen(me + ["--callers", str(n), "--url", url, "--window",
                                        str(args.window), "--client-core",
                                        str(args.client_core)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            assert cl.stdout is not None and cl.stdin is not None
            if cl.stdout.readline().strip() != "READY":
                print(f"{n:>5} callers failed to connect")
                cl.kill()
                break
            urllib.request.urlopen(urllib.request.Request(url + "/bench/reset", method="POST"))
            cl.stdin.write("go\n")
            cl.stdin.flush()
            client = json.loads(cl.stdout.readline())
            with urllib.request.urlopen(url + "/bench/stats") as res:
                st = json.loads(res.read())
            cl.stdin.close()
            cl.wait(timeout=60)
            call_s = n * st["seconds"]
            per = 1000 * st["cpu_s"] / call_s
            enc = 1000 * st["encode_s"] / call_s
            dec = 1000 * st["decode_s"] / call_s
            ok = st["max_late_ms"] <= LATE_LIMIT_MS and client["client_max_late_ms"] <= LATE_LIMIT_MS
            print(f"{n:>5} {per:>13.2f} {enc:>8.2f} {dec:>8.2f} {per - enc - dec:>6.2f} "
                  f"{100 * st['cpu_s'] / st['seconds']:>6.0f} {st['max_late_ms']:>11.1f} "
                  f"{client['client_max_late_ms']:>11.1f}  {'yes' if ok else 'NO'}",
                  flush=True)
            if ok:
                best = n
            elif not args.keep_going:
                break
            time.sleep(2)  # let the gateway close the calls
        print(f"largest number of calls with every frame on time (<= {LATE_LIMIT_MS:.0f} ms): "
              f"{best} (of the steps tried)")
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", default="5,10,20,30,40,50,60",
                   type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--window", type=float, default=10.0)
    p.add_argument("--server-core", type=int, default=0)
    p.add_argument("--client-core", type=int, default=1)
    p.add_argument("--keep-going", action="store_true", help="try every step")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--callers", type=int, help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve(args.server_core)
    elif args.callers:
        callers(args.url, args.callers, args.window, args.client_core)
    else:
        run(args)


if __name__ == "__main__":
    main()
