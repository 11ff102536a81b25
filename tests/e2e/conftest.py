"""Fixtures of the end-to-end tests (see `harness` for the recording gateway)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.e2e.harness import Gateway, start_gateway
from tests.kit.clients import OPEN
from tests.kit.speech import espeak_available


@pytest.fixture(scope="session", autouse=True)
def _needs_espeak() -> None:
    if not espeak_available():
        pytest.skip("espeak-ng is not installed (make system-deps)")


@pytest.fixture
async def gateway_factory() -> AsyncIterator[Callable[..., Awaitable[Gateway]]]:
    """`await gateway_factory(**settings)`; every gateway is stopped after the test."""
    started: list[Gateway] = []

    async def make(setup: Callable[[Any], Awaitable[None]] | None = None,
                   **settings: Any) -> Gateway:
        gw = await start_gateway(setup, **settings)
        started.append(gw)
        return gw

    yield make
    for client in list(OPEN):  # a failed test may leave calls open
        await client.close()
    for gw in started:
        await gw.app.stop(drain_timeout=0.5)
