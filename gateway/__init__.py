"""The gateway: transports, the voice loop (`Call`) and the `AtomsApp` server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import AtomsApp

__all__ = ["AtomsApp"]


def __getattr__(name: str) -> Any:
    if name == "AtomsApp":  # imported lazily: the server pulls in aiohttp and the media stack
        from gateway.app import AtomsApp

        return AtomsApp
    raise AttributeError(name)
