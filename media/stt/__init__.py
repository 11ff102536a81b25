"""Speech-to-text: the interface (`media.stt.base`, re-exported here), one module per
engine and a factory by name, the way aiortc's `codecs` has `get_decoder`.

    engine = get_engine("deepgram", DeepgramOptions(model="nova-3"))
    engine.check()                       # start-up: RuntimeError naming what is missing

Each engine module (`pocketsphinx`, `deepgram`, `openai`, `pulse`) has its typed options
(its `Options`), `create(options)` and `describe(options, engine)`; it is imported only
when its engine is asked for. `media.stt.ws` is what the two live WebSocket recognisers
(Deepgram, Pulse) share.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from media.engine_registry import EngineRegistry
from media.stt.base import (
    AsyncEndOfTurn,
    SttEngine,
    SttStream,
    Transcript,
    check_frame,
    finish_turn,
)

__all__ = ["ENGINES", "AsyncEndOfTurn", "SttEngine", "SttStream", "Transcript",
           "check_frame", "describe", "engine_module", "finish_turn", "get_engine"]

# engine name -> its module; adding an engine is its module plus a line here
ENGINES: dict[str, str] = {
    "pocketsphinx": "media.stt.pocketsphinx",
    "deepgram": "media.stt.deepgram",
    "openai": "media.stt.openai",
    "pulse": "media.stt.pulse",
}


_REGISTRY = EngineRegistry("speech recogniser", ENGINES)


def engine_module(name: str) -> ModuleType:
    """The module of the engine called `name` (ValueError for an unknown one)."""
    return _REGISTRY.module(name)


def get_engine(name: str, options: Any = None) -> SttEngine:
    """A new engine `name` made from `options` (that engine's `Options`; None: defaults).
    Cloud engines are not checked yet: call their `check()`."""
    engine: SttEngine = _REGISTRY.create(name, options)
    return engine


def describe(name: str, options: Any, engine: Any) -> str:
    """How the start-up line names engine `name` made from `options`."""
    return _REGISTRY.describe(name, options, engine)
