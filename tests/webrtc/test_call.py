"""WebRTC calls end to end: an aiortc caller in this process calls the in-process gateway
over HTTP signalling, speaks espeak-ng speech and listens to the agent."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from gateway.demo import GREETING
from gateway.transports.webrtc import WEBRTC
from tests.kit.rtc_peer import Received, RtcCaller, loud_runs
from tests.kit.speech import speech, trim_silence
from tests.webrtc.agents import SHORT_GREETING, short_setup

BARGE_IN_TOLERANCE_S = 0.6  # speech onset -> last loud agent frame, network and jitter included


async def tts_audio(app, text: str) -> tuple[float, float]:
    """(seconds, dBFS) of the gateway's own TTS saying `text`, leading/trailing quiet cut."""
    chunks = [chunk async for chunk in app.tts.synthesize(text)]
    pcm = trim_silence(np.concatenate(chunks), threshold=100).astype(np.float64)
    return len(pcm) / 16000, float(10 * np.log10(np.mean(pcm**2) / 32768.0**2))


def check_run(frames: list[Received], expected: tuple[float, float]) -> None:
    """A loud run received as long and as loud as the TTS made it (Opus and timing slack)."""
    seconds = sum(f.samples / f.rate for f in frames)
    power = np.mean([f.samples * 10 ** (f.dbfs / 10) for f in frames]) / frames[0].samples
    dbfs = 10 * np.log10(power)
    exp_s, exp_db = expected
    assert exp_s * 0.9 - 0.1 < seconds < exp_s * 1.1 + 0.1, (seconds, exp_s)
    assert abs(dbfs - exp_db) < 3.0, (dbfs, exp_db)


async def test_greeting_then_reply_arrive_as_audio(app_factory):
    async with app_factory(short_setup) as (app, url):
        caller = RtcCaller(url)
        await caller.connect()
        # the greeting: text on the channel, then audio of the right length and energy
        await caller.wait_event(lambda e: e["type"] == "agent.speak"
                                and e["text"] == SHORT_GREETING)
        await caller.wait_event(lambda e: e["type"] == "agent.transcript.update"
                                and e["role"] == "assistant" and e["content"] == SHORT_GREETING)
        await caller.wait(lambda: len(caller.frames) and caller.frames[-1].dbfs < -60, 5)
        runs = loud_runs(caller.frames)
        assert len(runs) == 1, runs
        check_run(caller.frames[runs[0][0] : runs[0][1] + 1],
                  await tts_audio(app, SHORT_GREETING))
        assert all(f.rate == 48000 and f.samples == 960 for f in caller.frames)

        # the caller speaks; the agent answers in words and in audio
        n_events, n_frames = len(caller.events), len(caller.frames)
        caller.mic.play(trim_silence(speech("what time is it")))
        said = await caller.wait_event(lambda e: e["type"] == "agent.transcript.update"
                                       and e["role"] == "user", start=n_events)
        assert said["content"] == "what time is it"
        await caller.wait_event(lambda e: e["type"] == "agent.llm.response.end",
                                start=n_events)
        reply = "".join(e["text"] for e in caller.events[n_events:]
                        if e["type"] == "agent.llm.response.chunk")
        assert reply.startswith("It is ")
        await caller.wait_event(lambda e: e["type"] == "agent.transcript.update"
                                and e["role"] == "assistant", start=n_events)
        await caller.wait(lambda: caller.frames[-1].dbfs < -60, 5)
        later = caller.frames[n_frames:]
        reply_runs = loud_runs(later)
        assert len(reply_runs) == 1, reply_runs
        a, b = reply_runs[0]
        check_run(later[a : b + 1], await tts_audio(app, reply))
        await caller.close()


async def test_talking_over_the_greeting_stops_its_audio(app_factory):
    async with app_factory() as (app, url):  # the demo agent: a long greeting
        caller = RtcCaller(url)
        await caller.connect()
        await caller.wait(lambda: len(caller.loud()) >= 75, 15)  # 1.5 s of greeting heard
        onset = caller.mic.play(trim_silence(speech("what time is it")))
        await caller.wait_event(lambda e: e["type"] == "system.control.interrupt", 5)
        await caller.wait(lambda: len(caller.mic.sent_at) > onset, 5)
        t_onset = caller.mic.sent_at[onset]
        heard = await caller.wait_event(lambda e: e["type"] == "agent.transcript.update"
                                        and e["role"] == "assistant")
        assert GREETING.startswith(heard["content"]) and heard["content"] != GREETING
        # wait for the caller's turn to be answered, then look at what played when
        await caller.wait_event(lambda e: e["type"] == "agent.transcript.update"
                                and e["role"] == "user")
        runs = loud_runs(caller.frames, gap_ms=400)
        greeting_run = next(r for r in runs if caller.frames[r[1]].at >= t_onset)
        stop_s = caller.frames[greeting_run[1]].at - t_onset
        print(f"speech onset -> last loud agent frame: {stop_s * 1000:.0f} ms")
        assert stop_s < BARGE_IN_TOLERANCE_S, f"agent audio went on {stop_s * 1000:.0f} ms"
        # nothing of the greeting after that: the next loud audio is the reply, later on
        rest = [r for r in runs if caller.frames[r[0]].at > caller.frames[greeting_run[1]].at]
        if rest:
            assert caller.frames[rest[0][0]].at - caller.frames[greeting_run[1]].at > 0.4
        call = next(iter(app.calls.values()))
        assert len(call.interrupts) == 1
        await caller.close()


async def test_events_channel_carries_text_dtmf_and_errors(app_factory):
    async with app_factory(short_setup) as (app, url):
        caller = RtcCaller(url)
        await caller.connect()
        started = await caller.wait_event(lambda e: e["type"] == "started")
        assert started["call_id"] in app.calls
        await caller.wait_event(lambda e: e["type"] == "agent.speak")
        caller.send({"type": "dtmf", "digit": "7"})
        dtmf = await caller.wait_event(lambda e: e["type"] == "system.dtmf")
        assert dtmf["digit"] == "7"
        caller.send({"type": "dtmf", "digit": "x"})
        err = await caller.wait_event(lambda e: e["type"] == "error")
        assert "DTMF" in err["message"]
        caller.send("not json")
        await caller.wait(lambda: sum(e["type"] == "error" for e in caller.events) >= 2, 5)
        n = len(caller.events)
        caller.send({"type": "text", "text": "tell me a story"})
        user = await caller.wait_event(lambda e: e["type"] == "agent.transcript.update"
                                       and e["role"] == "user", start=n)
        assert user["content"] == "tell me a story"
        chunk = await caller.wait_event(lambda e: e["type"] == "agent.llm.response.chunk",
                                        start=n)
        assert "lighthouse" in chunk["text"]
        assert len(app.calls) == 1
        await caller.close()


# -- lifecycle -------------------------------------------------------------------------------


def peer_tasks(peer_id: str, call_id: str) -> list[asyncio.Task]:
    return [t for t in asyncio.all_tasks()
            if peer_id in t.get_name() or call_id in t.get_name()]


async def ended(app, caller: RtcCaller, timeout: float = 10.0) -> None:
    rtc = app.web[WEBRTC]
    async with asyncio.timeout(timeout):
        while rtc.peers or app.calls:
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("how", ["delete", "client_close", "hangup_message", "agent_end_call",
                                 "server_stop"])
async def test_every_way_out_closes_peer_and_call(app_factory, how):
    async with app_factory(short_setup) as (app, url):
        rtc = app.web[WEBRTC]
        caller = RtcCaller(url)
        await caller.connect()
        started = await caller.wait_event(lambda e: e["type"] == "started")
        peer = rtc.peers[caller.id]
        call = app.calls[started["call_id"]]
        if how == "delete":
            assert await caller.delete() == 200
        elif how == "client_close":
            await caller.close()
        elif how == "hangup_message":
            caller.send({"type": "hangup"})
        elif how == "agent_end_call":
            caller.send({"type": "text", "text": "goodbye"})
        else:
            await app.stop(drain_timeout=0)
        await ended(app, caller, 15)
        await asyncio.wait_for(peer.closed.wait(), 5)
        assert call.closed
        assert peer.pc.connectionState == "closed"
        assert peer.track.readyState == "ended"
        assert peer_tasks(peer.id, call.call_id) == []
        if how in ("delete", "agent_end_call", "hangup_message", "server_stop"):
            end = await caller.wait_event(lambda e: e["type"] == "end", 5)
            expected = {"delete": "client hung up", "agent_end_call": "agent ended the call",
                        "hangup_message": "client hung up", "server_stop": "server shutdown"}
            assert end["reason"] == expected[how]
            await caller.wait(lambda: caller.pc.connectionState == "closed", 10)
        if how == "agent_end_call":
            said = [e for e in caller.events if e["type"] == "agent.llm.response.chunk"]
            assert said and "Goodbye" in said[-1]["text"]
        await caller.close()


async def test_vanished_caller_ends_the_call_when_ice_consent_expires(app_factory, monkeypatch):
    """ICE failure: the caller disappears without a goodbye (its UDP sockets just close)."""
    import aioice.ice

    monkeypatch.setattr(aioice.ice, "CONSENT_INTERVAL", 0.2)
    monkeypatch.setattr(aioice.ice, "CONSENT_FAILURES", 2)
    async with app_factory(short_setup) as (app, url):
        rtc = app.web[WEBRTC]
        caller = RtcCaller(url)
        await caller.connect()
        await caller.wait_event(lambda e: e["type"] == "started")
        peer = rtc.peers[caller.id]
        ice = caller.pc.getTransceivers()[0].receiver.transport.transport
        for protocol in ice._connection._protocols:  # drop the caller off the network
            protocol.transport.close()
        await ended(app, caller, 15)
        assert peer.reason.startswith(("connection", "caller audio ended", "events channel"))
        assert peer.pc.connectionState == "closed"
        await caller.close()


async def test_unconnected_offer_is_dropped_after_the_connect_timeout(app_factory, monkeypatch):
    """A caller that sends an offer and never applies the answer does not leave a peer."""
    import aiohttp

    import gateway.transports.webrtc as webrtc

    monkeypatch.setattr(webrtc, "CONNECT_TIMEOUT", 0.5)
    async with app_factory(short_setup) as (app, url):
        rtc = app.web[WEBRTC]
        caller = RtcCaller(url)
        await caller.pc.setLocalDescription(await caller.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            async with http.post(url + "/webrtc/offer", json={
                    "sdp": caller.pc.localDescription.sdp, "type": "offer"}) as res:
                assert res.status == 200
        assert len(rtc.peers) == 1
        await ended(app, caller, 5)
        assert app.calls == {}
        await caller.close()


async def test_caller_whose_audio_stops_is_ended_before_ice_consent_expires(app_factory,
                                                                             monkeypatch):
    """A page that vanishes without a DTLS close (crash, lost network) stops sending audio
    at once; the call ends after MEDIA_TIMEOUT, not when ICE consent runs out (~30 s)."""
    import gateway.transports.webrtc as webrtc

    monkeypatch.setattr(webrtc, "MEDIA_TIMEOUT", 0.6)
    async with app_factory(short_setup) as (app, url):
        rtc = app.web[WEBRTC]
        caller = RtcCaller(url)
        await caller.connect()
        await caller.wait_event(lambda e: e["type"] == "started")
        peer = rtc.peers[caller.id]
        frozen = asyncio.Event()

        async def silent_forever():  # the microphone stops; ICE and DTLS stay up
            await frozen.wait()

        caller.mic.recv = silent_forever  # type: ignore[method-assign]
        await ended(app, caller, 10)
        assert peer.reason == "no caller audio for 1 s"
        assert caller.pc.connectionState != "failed"  # ICE had not given up
        await caller.close()


async def test_listen_only_page_hears_the_agent_and_times_out_when_silent(app_factory):
    """A page without a microphone (recvonly audio) hears the greeting and may type; with
    neither audio nor messages for the idle timeout, its call ends (audio callers have
    MEDIA_TIMEOUT instead)."""
    async with app_factory(short_setup, idle_timeout=1.5) as (app, url):
        rtc = app.web[WEBRTC]
        caller = RtcCaller(url, mic=False)
        await caller.connect()
        await caller.wait_event(lambda e: e["type"] == "started")
        await caller.wait(lambda: caller.loud(), 10)  # the greeting arrives
        peer = rtc.peers[caller.id]
        for _ in range(4):  # typing keeps the call up past the timeout
            await asyncio.sleep(0.6)
            caller.send({"type": "dtmf", "digit": "1"})
        assert app.calls and not peer.closed.is_set()
        await ended(app, caller, 10)
        assert peer.reason == "no caller audio and no message for 1.5 s"
        await caller.close()
