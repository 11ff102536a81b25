"""The audio edge of the WebRTC transport: downmix, resampling, the paced outbound track."""

import fractions

import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from gateway.transports.webrtc_media import (
    OUT_RATE,
    OUT_SAMPLES,
    AgentAudioTrack,
    InboundAudio,
    to_mono_int16,
)
from media.frames import FRAME_SAMPLES, SAMPLE_RATE


def tone(freq: float, rate: int, n: int, level: float = 8000.0, phase0: int = 0) -> np.ndarray:
    t = (np.arange(n) + phase0) / rate
    return (level * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def packed_stereo(left: np.ndarray, right: np.ndarray, rate: int) -> AudioFrame:
    """An aiortc-style decoded Opus frame: interleaved s16 stereo."""
    inter = np.empty(2 * len(left), dtype=np.int16)
    inter[0::2], inter[1::2] = left, right
    frame = AudioFrame.from_ndarray(inter.reshape(1, -1), format="s16", layout="stereo")
    frame.sample_rate = rate
    return frame


def mono(pcm: np.ndarray, rate: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


def test_downmix_interleaved_stereo_averages_channels():
    left = np.full(960, 1000, dtype=np.int16)
    right = np.full(960, -3000, dtype=np.int16)
    out = to_mono_int16(packed_stereo(left, right, 48000))
    assert out.dtype == np.int16 and out.shape == (960,)
    assert np.all(out == -1000)


def test_downmix_planar_and_float_formats():
    left = np.linspace(-0.5, 0.5, 480, dtype=np.float32)
    planar = np.stack([left, left])
    frame = AudioFrame.from_ndarray(planar, format="fltp", layout="stereo")
    frame.sample_rate = 48000
    out = to_mono_int16(frame)
    assert out.shape == (480,)
    np.testing.assert_allclose(out, np.clip(left * 32768, -32768, 32767).astype(np.int16), atol=1)


@pytest.mark.parametrize(("rate", "stereo"), [(48000, True), (8000, False), (16000, False)])
def test_inbound_gives_exact_16k_frames_with_the_tone_kept(rate, stereo):
    """Opus arrives as 48 kHz stereo, PCMU as 8 kHz mono: both become 20 ms 16 kHz frames."""
    inbound = InboundAudio()
    per = rate // 50
    frames: list[np.ndarray] = []
    for i in range(50):  # one second
        pcm = tone(440.0, rate, per, phase0=i * per)
        av_frame = packed_stereo(pcm, pcm, rate) if stereo else mono(pcm, rate)
        frames += inbound.process(av_frame)
    assert all(f.shape == (FRAME_SAMPLES,) and f.dtype == np.int16 for f in frames)
    assert 48 <= len(frames) <= 50  # the resampler's few ms of delay may hold one back
    pcm = np.concatenate(frames[5:]).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(pcm)
    assert abs(peak_hz - 440.0) < 5
    assert 7000 < np.abs(pcm).max() < 8500


def test_inbound_follows_a_rate_change():
    inbound = InboundAudio()
    out = []
    for _ in range(10):
        out += inbound.process(mono(tone(300, 8000, 160), 8000))
    for _ in range(10):
        out += inbound.process(packed_stereo(tone(300, 48000, 960), tone(300, 48000, 960), 48000))
    assert len(out) >= 18 and all(len(f) == FRAME_SAMPLES for f in out)


async def test_track_frames_have_48k_timestamps_and_silence_when_idle():
    track = AgentAudioTrack()
    frames = [await track.recv() for _ in range(3)]
    for i, f in enumerate(frames):
        assert f.sample_rate == OUT_RATE and f.samples == OUT_SAMPLES
        assert f.time_base == fractions.Fraction(1, OUT_RATE)
        assert f.pts == i * OUT_SAMPLES
        assert f.format.name == "s16" and f.layout.name == "stereo"
        assert not f.to_ndarray().any()
    track.stop()


async def test_track_plays_queued_agent_audio_then_silence():
    track = AgentAudioTrack()
    speech = tone(500, SAMPLE_RATE, 10 * FRAME_SAMPLES)
    for i in range(10):
        track.push(speech[i * FRAME_SAMPLES : (i + 1) * FRAME_SAMPLES])
    assert track.queued_frames >= 9
    loud = []
    for _ in range(14):
        f = await track.recv()
        loud.append(np.abs(f.to_ndarray()).max() > 4000)
    assert sum(loud) >= 9
    assert not any(loud[-3:])  # silence once the queue ran dry
    track.stop()


async def test_clear_drops_everything_queued_at_once():
    track = AgentAudioTrack()
    for _ in range(50):
        track.push(tone(500, SAMPLE_RATE, FRAME_SAMPLES))
    assert track.queued_frames >= 49
    await track.recv()
    track.clear()
    assert track.queued_frames == 0
    nxt = await track.recv()
    assert not nxt.to_ndarray().any()
    track.stop()


async def test_stopped_track_raises_and_ignores_pushes():
    track = AgentAudioTrack()
    track.stop()
    track.push(tone(500, SAMPLE_RATE, FRAME_SAMPLES))
    assert track.queued_frames == 0
    with pytest.raises(MediaStreamError):
        await track.recv()


def test_numpy_audio_level_equals_aiortcs_own():
    import inspect

    from aiortc import rtcrtpsender, rtp

    from gateway.transports import webrtc_media

    assert rtp.compute_audio_level_dbov is webrtc_media.audio_level_dbov
    assert "rtp.compute_audio_level_dbov" in inspect.getsource(rtcrtpsender)  # looked up late
    original = _aiortc_level()
    rng = np.random.default_rng(3)
    for level in (0, 1, 30, 1000, 12000, 32767):
        pcm = np.clip(rng.standard_normal(1920) * level, -32768, 32767).astype(np.int16)
        for layout, n in (("stereo", 1920), ("mono", 960)):
            frame = AudioFrame.from_ndarray(pcm[:n].reshape(1, -1), format="s16", layout=layout)
            assert webrtc_media.audio_level_dbov(frame) == original(frame)


def _aiortc_level():
    """aiortc's own implementation, loaded fresh from its source file."""
    import importlib.util

    import aiortc

    spec = importlib.util.spec_from_file_location(
        "aiortc_rtp_original", aiortc.__path__[0] + "/rtp.py", submodule_search_locations=None)
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "aiortc"
    spec.loader.exec_module(module)
    return module.compute_audio_level_dbov
