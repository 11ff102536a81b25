"""`replay_async(wire=...)`: a phone line's 8 kHz G.711 both ways."""

from __future__ import annotations

import asyncio

import numpy as np

from gateway.testing import replay_async
from media.frames import SAMPLE_RATE


def _tone(hz: float, seconds: float, level: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return level * np.sin(2 * np.pi * hz * t)


def _band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    f = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(spec[(f >= lo) & (f < hi)].sum())


def _replay(channel: np.ndarray, agent: np.ndarray | None = None, **kw: object):  # noqa: ANN202
    return asyncio.run(replay_async(channel.astype(np.int16), agent_channel=agent is not None,
                                    agent_audio=agent, tail_ms=0, **kw))


def test_the_wire_keeps_the_phone_band_only() -> None:
    """A 1 kHz and a 6 kHz tone from the caller: over the wire the gateway hears the 1 kHz
    one (mu-law noise aside) and nothing of the 6 kHz one; without it, both."""
    x = _tone(1000, 1.0) + _tone(6000, 1.0)
    wide = _replay(x).caller[4000:12000]
    phone = _replay(x, wire="pcmu").caller[4000:12000]
    assert _band_power(wide, 5500, 6500) > 0.3 * _band_power(wide, 900, 1100)
    assert _band_power(phone, 5500, 6500) < 1e-4 * _band_power(phone, 900, 1100)
    assert _band_power(phone, 900, 1100) > 0.5 * _band_power(wide, 900, 1100)


def test_the_wire_echo_comes_back_band_limited_at_its_delay() -> None:
    """The agent's audio (a 1 kHz + 6 kHz tone burst) comes back into the caller channel
    `echo_ms` later and `echo_db` down, through the wire both ways: its 1 kHz part only."""
    n = 2 * SAMPLE_RATE
    agent = np.zeros(n)
    agent[SAMPLE_RATE // 2 : SAMPLE_RATE] = (_tone(1000, 0.5) + _tone(6000, 0.5))
    silent = np.zeros(n)
    r = _replay(silent, agent.astype(np.int16), echo_db=-10.0, echo_ms=100.0, wire="pcmu")
    heard = r.caller.astype(np.float64)
    played = np.flatnonzero(np.abs(r.agent) > 1000)
    assert len(played), "the agent's audio was not played"
    start = int(played[0])
    lag = int(np.argmax(np.abs(heard) > 500)) - start  # where the echo starts
    assert 100 * 16 <= lag <= 110 * 16  # the line's 100 ms, and the resamplers' ~3 ms
    echo = heard[start + lag + 1600 : start + lag + 6400]
    sent = r.agent[start + 1600 : start + 6400].astype(np.float64)
    gain_db = 10 * np.log10(_band_power(echo, 900, 1100) / _band_power(sent, 900, 1100))
    assert -11.0 < gain_db < -9.0
    assert _band_power(echo, 5500, 6500) < 1e-4 * _band_power(echo, 900, 1100)
