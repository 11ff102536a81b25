"""Agent servers for the compatibility tests: the published SDK's `AtomsApp` (in-process
with uvicorn, see `published_server`) or ours (`gateway.app.AtomsApp` and its `/ws`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal

from loguru import logger

from tests.compat.published_server import published_atoms_app

logger.disable("smallestai")  # the published SDK logs every event at DEBUG to stderr

HOST = "127.0.0.1"


@contextlib.asynccontextmanager
async def our_atoms_app(setup: Callable[[Any], Awaitable[None]],
                        **settings: Any) -> AsyncIterator[str]:
    """Serve `setup` with our AtomsApp on 127.0.0.1; yields the ws:// URL of `/ws`."""
    from gateway.app import AtomsApp

    app = AtomsApp(setup_handler=setup, host=HOST, **settings)
    port = await app.start(HOST, 0)
    try:
        yield f"ws://{HOST}:{port}/ws"
    finally:
        await app.stop(drain_timeout=0.5)


def serve(flavor: Literal["published", "ours"],
          setup: Callable[[Any], Awaitable[None]]) -> contextlib.AbstractAsyncContextManager[str]:
    return published_atoms_app(setup) if flavor == "published" else our_atoms_app(setup)
