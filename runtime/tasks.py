"""Stopping a task cleanly: cancel it and wait, without swallowing our own cancellation."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` (if running) and wait for it to finish; its errors are logged.

    If the caller itself is being cancelled meanwhile, that cancellation propagates."""
    if task is None or task is asyncio.current_task():
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    except Exception:
        log.exception("task %s failed while stopping", task.get_name())
