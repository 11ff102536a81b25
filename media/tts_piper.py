"""Moved to `media.tts.piper`; this name stays for tests/bargein_flows.py, which another
developer is changing just now."""

from media.tts.piper import PiperTTS, split_phrases

__all__ = ["PiperTTS", "split_phrases"]
