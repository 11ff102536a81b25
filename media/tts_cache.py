"""Moved to `media.tts.cache`; this name stays for tests/bargein_call_flows.py, which
another developer is changing just now."""

from media.tts.cache import CachedTTS

__all__ = ["CachedTTS"]
