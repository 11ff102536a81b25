"""The recognisers by name: `media.stt.get_engine` and the settings-to-options mapping."""

import pytest

from gateway.engines import engine_options
from gateway.settings import STT_ENGINES, Settings
from media import stt
from media.stt.deepgram import DEEPGRAM_URL, DeepgramOptions, DeepgramSTT
from media.stt.openai import OpenAISTT
from media.stt.pulse import PULSE_URL, PulseSTT


def test_the_registry_names_the_engines_the_settings_accept():
    assert tuple(stt.ENGINES) == STT_ENGINES


def test_get_engine_by_name_with_typed_options():
    engine = stt.get_engine("deepgram", DeepgramOptions(api_key="k", model="nova-2"))
    assert isinstance(engine, DeepgramSTT)
    assert (engine.model, engine.url, engine.language) == ("nova-2", DEEPGRAM_URL, "en")
    with pytest.raises(ValueError, match="unknown speech recogniser 'nope'"):
        stt.get_engine("nope")


def test_settings_fill_the_options():
    s = Settings(stt="deepgram", deepgram_api_key="dg", stt_api_key="other")
    module = stt.engine_module("deepgram")
    options = engine_options(module, "deepgram", s, "stt")
    assert options == DeepgramOptions(api_key="dg", language="en")  # its own key setting
    engine = module.create(options)
    assert module.describe(options, engine) == f"deepgram (model nova-3, at {DEEPGRAM_URL})"

    s = Settings(stt="openai", stt_api_key="k", stt_url="http://127.0.0.1:9/v1",
                 stt_phrases=["yes", "no"], stt_language="")
    module = stt.engine_module("openai")
    engine = module.create(engine_options(module, "openai", s, "stt"))
    assert isinstance(engine, OpenAISTT)
    assert (engine.prompt, engine.language, engine.server) == ("yes, no", None,
                                                                "http://127.0.0.1:9/v1")

    module = stt.engine_module("pulse")
    options = engine_options(module, "pulse", Settings(stt="pulse", stt_api_key="k"), "stt")
    engine = module.create(options)
    assert isinstance(engine, PulseSTT)
    assert module.describe(options, engine) == f"pulse (at {PULSE_URL})"


def test_the_offline_recogniser_from_the_settings():
    from gateway.engines import make_stt

    engine, words = make_stt(Settings(stt="pocketsphinx", stt_phrases=["yes", "no"],
                                      stt_pool=1, stt_garbage="words"))
    assert engine.phrases == ["yes", "no"] and engine.garbage == "words"
    assert words == ("pocketsphinx (offline, a grammar of 2 phrases, other speech rejected, "
                     "1 recognisers)")
    with pytest.raises(RuntimeError, match="unknown speech recogniser stt='x'"):
        s = Settings()
        s.stt = "x"
        make_stt(s)
