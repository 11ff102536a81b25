"""Moved to `runtime.tasks`; this name stays for the modules that still import it here
(gateway/call.py, gateway/media_tick.py)."""

from runtime.tasks import cancel_and_wait

__all__ = ["cancel_and_wait"]
