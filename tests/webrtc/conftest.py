"""Fixtures: an in-process `AtomsApp` on 127.0.0.1 (any free port) for WebRTC callers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.kit.speech import espeak_available

if not espeak_available():
    pytest.skip("espeak-ng is not installed (make system-deps)", allow_module_level=True)


@contextlib.asynccontextmanager
async def running_app(setup: Callable[[Any], Awaitable[None]] | None = None,
                      **settings: Any) -> AsyncIterator[tuple[Any, str]]:
    """Start an `AtomsApp` and yield (app, base_url); stop it (no drain) afterwards."""
    from gateway.app import AtomsApp

    settings.setdefault("host", "127.0.0.1")
    app = AtomsApp(setup_handler=setup, **settings)
    if setup is not None and "stt_phrases" not in settings:
        from gateway.demo import PHRASES

        app.settings.stt_phrases = PHRASES
    port = await app.start("127.0.0.1", 0)
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        await app.stop(drain_timeout=0)


@pytest.fixture
def app_factory():
    return running_app
