"""Moved to `media.stt.pocketsphinx`; this name stays a while for work in flight that
still imports it here (nothing in the repository does)."""

from media.stt.pocketsphinx import (
    GARBAGE_KINDS,
    PocketSphinxStream,
    PocketSphinxSTT,
    normalize_phrase,
)

__all__ = ["GARBAGE_KINDS", "PocketSphinxSTT", "PocketSphinxStream", "normalize_phrase"]
