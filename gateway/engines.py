"""The speech engines of an app, made by name from the gateway's flat settings.

Each engine has its own typed options (the `Options` of its module in `media.stt` or
`media.tts`). An option `x` is filled from the setting `stt_x` (or `tts_x`), except where
`_RENAMED` says otherwise; a setting left unset (None) leaves the option's default.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

from gateway.settings import Settings

# (engine, option) -> the setting it comes from, where that is not `{stt,tts}_{option}`
_RENAMED: dict[tuple[str, str], str] = {
    ("deepgram", "api_key"): "deepgram_api_key",
}


def engine_options(module: ModuleType, kind: str, settings: Settings, prefix: str) -> Any:
    """The `module.Options` of engine `kind` from `settings` (`prefix`: "stt" or "tts")."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(module.Options):
        value = getattr(settings, _RENAMED.get((kind, field.name), f"{prefix}_{field.name}"))
        if value is not None:
            values[field.name] = value
    return module.Options(**values)


def make_tts(settings: Settings) -> tuple[Any, str]:
    """The synthesiser that `settings.tts` names (not checked yet), and its start-up words
    (RuntimeError for an unknown name)."""
    from media import tts

    kind = (settings.tts or "espeak").strip().lower()
    if kind not in tts.ENGINES:
        raise RuntimeError(f"unknown speech synthesiser tts={settings.tts!r}: "
                           "use 'espeak', 'piper', 'openai' or 'waves'")
    module = tts.engine_module(kind)
    options = engine_options(module, kind, settings, "tts")
    engine = module.create(options)
    return engine, module.describe(options, engine)


def make_stt(settings: Settings) -> tuple[Any, str]:
    """The recogniser that `settings.stt` names, and its start-up words (RuntimeError for
    an unknown name). Not checked yet (pocketsphinx checks as it builds its recognisers)."""
    from media import stt

    kind = (settings.stt or "pocketsphinx").strip().lower()
    if kind not in stt.ENGINES:
        raise RuntimeError(f"unknown speech recogniser stt={settings.stt!r}: "
                           "use 'pocketsphinx', 'deepgram', 'openai' or 'pulse'")
    module = stt.engine_module(kind)
    options = engine_options(module, kind, settings, "stt")
    engine = module.create(options)
    return engine, module.describe(options, engine)
