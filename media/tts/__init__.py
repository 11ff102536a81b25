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

import importlib
from types import ModuleType
from typing import Any

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


def engine_module(name: str) -> ModuleType:
    """The module of the engine called `name` (ValueError for an unknown one)."""
    path = ENGINES.get(name.strip().lower())
    if path is None:
        raise ValueError(f"unknown speech synthesiser {name!r}: use "
                         + ", ".join(repr(n) for n in ENGINES))
    return importlib.import_module(path)


def get_engine(name: str, options: Any = None) -> TtsEngine:
    """A new engine `name` made from `options` (that engine's `Options`; None: defaults).
    Not checked yet: call its `check()`."""
    module = engine_module(name)
    return module.create(module.Options() if options is None else options)


def describe(name: str, options: Any, engine: Any) -> str:
    """How the start-up line names engine `name` made from `options`."""
    return engine_module(name).describe(options, engine)
