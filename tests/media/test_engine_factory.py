"""The speech engines by name: `media.tts.get_engine` and the gateway's settings to typed
options (`gateway.engines`)."""

import pytest

from gateway.engines import make_tts
from gateway.settings import TTS_ENGINES, Settings
from media import tts
from media.tts.espeak import EspeakOptions, EspeakTTS
from media.tts.waves import WAVES_URL, WavesTTS


def test_the_registry_names_the_engines_the_settings_accept():
    assert tuple(tts.ENGINES) == TTS_ENGINES


def test_get_engine_by_name_with_typed_options():
    engine = tts.get_engine("espeak", EspeakOptions(voice="en-gb"))
    assert isinstance(engine, EspeakTTS) and engine.voice == "en-gb"
    assert tts.get_engine("espeak").voice == "en-us"  # the options' defaults
    with pytest.raises(ValueError, match="unknown speech synthesiser 'nope'"):
        tts.get_engine("nope")


def test_settings_fill_the_options():
    engine, words = make_tts(Settings(tts="espeak"))
    assert engine.voice == "en-us" and words == "espeak (en-us)"
    engine, words = make_tts(Settings(tts=" Waves ", tts_voice="v1", tts_api_key="k"))
    assert isinstance(engine, WavesTTS)
    assert (engine.voice, engine.url) == ("v1", WAVES_URL)
    assert words == f"waves (voice v1, at {WAVES_URL})"
    engine, words = make_tts(Settings(tts="openai", tts_url="http://127.0.0.1:9/v1",
                                      tts_api_key="k", tts_model="m"))
    assert words == "openai (voice alloy, model m, at http://127.0.0.1:9/v1)"
    _, words = make_tts(Settings(tts="piper"))
    assert words == "piper"
    with pytest.raises(RuntimeError, match="unknown speech synthesiser tts='x'"):
        make_tts(_with_tts("x"))


def _with_tts(name: str) -> Settings:
    s = Settings()
    s.tts = name  # (past the settings' own check, as a program may set it)
    return s
