"""50 short WebRTC calls in a row leave nothing behind: no peer connections, calls, tasks,
threads or growing memory."""

from __future__ import annotations

import asyncio
import gc
import resource
import threading

from aiortc import RTCPeerConnection

from gateway.transports.webrtc import WEBRTC
from tests.kit.rtc_peer import RtcCaller
from tests.webrtc.agents import short_setup

CALLS = 50
RSS_GROWTH_LIMIT_MB = 40.0  # after a 10-call warm-up; a leak of one call's state would exceed it


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def live(cls: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, cls))


async def one_call(url: str, i: int) -> None:
    caller = RtcCaller(url)
    await caller.connect()
    await caller.wait(lambda: len(caller.loud()) >= 5, 10)  # 100 ms of the greeting
    if i % 3 == 0:
        assert await caller.delete() == 200
    elif i % 3 == 1:
        caller.send({"type": "hangup"})
        await caller.wait_event(lambda e: e["type"] == "end", 5)
    await caller.close()


async def test_fifty_calls_leave_nothing_behind(app_factory):
    async with app_factory(short_setup) as (app, url):
        rtc = app.web[WEBRTC]
        baseline_tasks = {t.get_name() for t in asyncio.all_tasks()}
        rss_warm = 0.0
        threads_warm = 0
        for i in range(CALLS):
            await one_call(url, i)
            async with asyncio.timeout(10):
                while rtc.peers or app.calls:
                    await asyncio.sleep(0.02)
            if i == 9:
                rss_warm, threads_warm = rss_mb(), threading.active_count()
        await asyncio.sleep(0.5)  # let aiortc's closing tasks finish
        gc.collect()
        assert rtc.peers == {} and app.calls == {}
        assert live(RTCPeerConnection) == 0
        # (the app's media tick starts with its first call and idles when it has none)
        ignored = baseline_tasks | {"media-tick"}
        leftover = [t.get_name() for t in asyncio.all_tasks()
                    if t.get_name() not in ignored and not t.done()]
        assert leftover == [asyncio.current_task().get_name()] or leftover == [], leftover
        # aiortc decodes in one thread per receiver (ended with the call) and encodes in
        # the loop's default executor (a bounded pool)
        assert threading.active_count() <= threads_warm + 2
        growth = rss_mb() - rss_warm
        print(f"RSS {rss_warm:.1f} -> {rss_mb():.1f} MB over calls 10..{CALLS}; "
              f"threads {threads_warm} -> {threading.active_count()}")
        assert growth < RSS_GROWTH_LIMIT_MB, f"RSS grew {growth:.1f} MB over {CALLS - 10} calls"
