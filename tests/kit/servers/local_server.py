"""What the local stand-ins for cloud services share: an aiohttp server on 127.0.0.1
(an ephemeral port unless one is given), `async with` to run it, `release()` for tests
that hold a reply back, and `run_forever` for `python -m tests.kit.servers.<server>`."""

from __future__ import annotations

import asyncio
from typing import Self

from aiohttp import web


class LocalServer:
    client_max_size = 1024 ** 2  # largest request body

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._release = asyncio.Event()
        self._runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """Let held replies go on."""
        self._release.set()

    async def start(self) -> Self:
        app = web.Application(client_max_size=self.client_max_size)
        self.routes(app)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        self._release.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def run_forever(server: LocalServer) -> None:
    """Serve until interrupted (the command-line use of a stand-in)."""

    async def run() -> None:
        async with server:
            await asyncio.Event().wait()

    asyncio.run(run())
