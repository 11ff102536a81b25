"""Signalling: offer validation, bearer token, ICE server settings, refusals."""

from __future__ import annotations

import aiohttp
import pytest

from gateway.transports.webrtc import (
    WEBRTC,
    SignallingError,
    browser_ice_config,
    parse_ice_server,
    parse_offer,
)
from tests.kit.rtc_peer import RtcCaller

OFFER = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"


def test_parse_offer_accepts_an_audio_offer_with_context():
    sdp, ctx = parse_offer({"sdp": OFFER, "type": "offer", "context": {"lang": "en"}})
    assert sdp == OFFER and ctx == {"lang": "en"}


@pytest.mark.parametrize(("body", "words"), [
    ([], "JSON object"),
    ({"sdp": OFFER, "type": "answer"}, "type must be 'offer'"),
    ({"sdp": 5, "type": "offer"}, "SDP offer"),
    ({"sdp": "v=0\r\nm=video 9 RTP/AVP 96\r\n", "type": "offer"}, "no audio"),
    ({"sdp": OFFER, "type": "offer", "context": "x"}, "context"),
])
def test_parse_offer_rejects_with_a_clear_message(body, words):
    with pytest.raises(SignallingError, match=words):
        parse_offer(body)


def test_ice_servers_stun_and_turn_with_credentials():
    stun = parse_ice_server("stun:stun.example.com:3478")
    assert stun.urls == "stun:stun.example.com:3478" and stun.username is None
    turn = parse_ice_server("turn:alice:s%40cret@turn.example.com:3478?transport=udp")
    assert turn.urls == "turn:turn.example.com:3478?transport=udp"
    assert (turn.username, turn.credential) == ("alice", "s@cret")
    cfg = browser_ice_config([stun, turn])
    assert cfg["iceServers"][1] == {"urls": "turn:turn.example.com:3478?transport=udp",
                                    "username": "alice", "credential": "s@cret"}
    assert "username" not in cfg["iceServers"][0]


@pytest.mark.parametrize("url", ["http://x", "turn:host:3478", "stun:u:p@host", "stun:"])
def test_bad_ice_server_settings_fail_loudly(url):
    with pytest.raises(ValueError, match="ICE server"):
        parse_ice_server(url)


async def test_token_bad_offers_unknown_ids_and_config(app_factory):
    ice = ["stun:127.0.0.1:3478"]
    async with app_factory(ws_token="sesame", ice_servers=ice) as (app, url):
        async with aiohttp.ClientSession() as http:
            ok = {"Authorization": "Bearer sesame"}
            async with http.post(url + "/webrtc/offer", json={"sdp": OFFER, "type": "offer"}) as r:
                assert r.status == 401
            async with http.post(url + "/webrtc/offer", data="{nope", headers=ok) as r:
                assert r.status == 400 and "bad offer" in await r.text()
            async with http.post(url + "/webrtc/offer", json={"sdp": OFFER, "type": "offer"},
                                 headers=ok) as r:  # parses, but aiortc cannot use it
                assert r.status == 400
            async with http.delete(url + "/webrtc/rtc-nothing", headers=ok) as r:
                assert r.status == 404
            async with http.get(url + "/webrtc/config?token=sesame") as r:
                assert r.status == 200
                assert await r.json() == {"iceServers": [{"urls": "stun:127.0.0.1:3478"}]}
            async with http.get(url + "/") as r:
                assert r.status == 200 and "<button id=\"call\"" in await r.text()
            async with http.get(url + "/static/app.js") as r:
                assert r.status == 200 and "/webrtc/offer" in await r.text()
        assert app.web[WEBRTC].peers == {} and app.calls == {}


async def test_call_limit_and_draining_refuse_offers(app_factory):
    async with app_factory(max_calls=1) as (app, url):
        first = RtcCaller(url)
        await first.connect()
        second = RtcCaller(url)
        with pytest.raises(RuntimeError, match="503"):
            await second.connect()
        await second.close()
        app.draining = True
        third = RtcCaller(url)
        with pytest.raises(RuntimeError, match="shutting down"):
            await third.connect()
        await third.close()
        await first.close()
