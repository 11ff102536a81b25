"""Moved to `media.tts.espeak`; this name stays for tests/bargein_call_flows.py, which
another developer is changing just now."""

from media.tts.espeak import EspeakTTS, WavFormatError, WavStreamParser

__all__ = ["EspeakTTS", "WavFormatError", "WavStreamParser"]
