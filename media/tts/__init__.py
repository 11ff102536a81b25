"""Text-to-speech: the interface (`media.tts.base`), one module per engine and a factory by
name, the way aiortc's `codecs` has `get_decoder`.

    engine = get_engine("espeak", EspeakOptions(voice="en-us"))
    engine.check()                       # start-up: RuntimeError naming what is missing

Each engine module (`espeak`, `piper`, `openai`, `waves`) has its typed options (its
`Options`), `create(options)` and `describe(options, engine)`; it is imported only when
its engine is asked for (piper and openai pull in heavy packages). `media.tts.cache`
wraps any engine with a cache of repeated texts.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from media.engine_registry import EngineRegistry
from media.tts.base import TtsEngine, synthesize_all

__all__ = ["ENGINES", "TtsEngine", "describe", "engine_module", "get_engine",
           "synthesize_all"]

# engine name -> its module; adding an engine is its module plus a line here
ENGINES: dict[str, str] = {
    "espeak": "media.tts.espeak",
    "piper": "media.tts.piper",
    "openai": "media.tts.openai",
    "waves": "media.tts.waves",
}


_REGISTRY = EngineRegistry("speech synthesiser", ENGINES)


def engine_module(name: str) -> ModuleType:
    """The module of the engine called `name` (ValueError for an unknown one)."""
    return _REGISTRY.module(name)


def get_engine(name: str, options: Any = None) -> TtsEngine:
    """A new engine `name` made from `options` (that engine's `Options`; None: defaults).
    Not checked yet: call its `check()`."""
    engine: TtsEngine = _REGISTRY.create(name, options)
    return engine


def describe(name: str, options: Any, engine: Any) -> str:
    """How the start-up line names engine `name` made from `options`."""
    return _REGISTRY.describe(name, options, engine)
