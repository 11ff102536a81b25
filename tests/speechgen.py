"""Moved to `tests.kit.speech`; this name stays for tests/bargein_*.py and
tests/media/test_bargein*.py, which another developer is changing just now."""

from tests.kit.speech import espeak_available, speech, trim_silence

__all__ = ["espeak_available", "speech", "trim_silence"]
