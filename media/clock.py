"""Moved to `runtime.clock`; this name stays for the modules that still import it here
(gateway/call.py, gateway/media_tick.py, gateway/testing.py)."""

from runtime.clock import Clock, RealClock, VirtualClock

__all__ = ["Clock", "RealClock", "VirtualClock"]
