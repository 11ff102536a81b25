"""Run the published SDK's own `AtomsApp` (FastAPI + uvicorn) in-process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.asynccontextmanager
async def published_atoms_app(setup: Callable[[Any], Awaitable[None]]) -> AsyncIterator[str]:
    """Serve `setup` with smallestai's AtomsApp; yields its ws:// URL."""
    from smallestai.atoms.agent.server import AtomsApp as PublishedApp

    app = PublishedApp(setup_handler=setup)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app.app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"ws://127.0.0.1:{port}/ws"
    finally:
        server.should_exit = True
        server.force_exit = True
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(task, 5)
