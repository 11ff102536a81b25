"""Speech engines by name: the one factory `media.stt` and `media.tts` both use.

Each engine is a module with its typed `Options`, `create(options)` and
`describe(options, engine)`, imported only when its engine is asked for."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class EngineRegistry:
    """Engine name -> its module (`engines`), for one kind of engine (`what`, for errors)."""

    def __init__(self, what: str, engines: dict[str, str]) -> None:
        self.what = what
        self.engines = engines

    def module(self, name: str) -> ModuleType:
        """The module of the engine called `name` (ValueError for an unknown one)."""
        path = self.engines.get(name.strip().lower())
        if path is None:
            raise ValueError(f"unknown {self.what} {name!r}: use "
                             + ", ".join(repr(n) for n in self.engines))
        return importlib.import_module(path)

    def create(self, name: str, options: Any = None) -> Any:
        """A new engine `name` made from `options` (its `Options`; None: defaults)."""
        module = self.module(name)
        return module.create(module.Options() if options is None else options)

    def describe(self, name: str, options: Any, engine: Any) -> str:
        """How the start-up line names engine `name` made from `options`."""
        return self.module(name).describe(options, engine)
