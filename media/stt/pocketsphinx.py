"""The offline recogniser, pocketsphinx: its typed options and its factory entry.

The engine itself (`PocketSphinxSTT`) is still in media/stt_pocketsphinx.py, which another
developer is changing just now; it moves here once that work is in.
"""

from __future__ import annotations

from dataclasses import dataclass

from media.stt_pocketsphinx import PocketSphinxStream, PocketSphinxSTT, normalize_phrase

__all__ = ["PocketSphinxOptions", "PocketSphinxSTT", "PocketSphinxStream", "Options", "create",
           "describe", "normalize_phrase"]


@dataclass(frozen=True)
class PocketSphinxOptions:
    """What `stt="pocketsphinx"` is made from."""

    phrases: list[str] | None = None  # a grammar of these phrases (None: open vocabulary)
    pool: int = 4  # recognisers made at start-up: callers that may speak at the same time
    garbage: str | None = None  # with phrases: "words" or "phones", a path other speech takes
    unrecognised: str | None = None  # the transcript of speech the grammar rejected


Options = PocketSphinxOptions  # (the factory's name for it: `media.stt.get_engine`)


def create(options: PocketSphinxOptions) -> PocketSphinxSTT:
    return PocketSphinxSTT(phrases=options.phrases, pool_size=options.pool,
                           garbage=options.garbage, unrecognised=options.unrecognised)


def describe(options: PocketSphinxOptions, engine: PocketSphinxSTT) -> str:
    """The start-up line's words for this engine."""
    phrases = options.phrases
    vocabulary = f"a grammar of {len(phrases)} phrases" if phrases else "open vocabulary"
    if phrases and options.garbage:
        vocabulary += ", other speech rejected"
    return f"pocketsphinx (offline, {vocabulary}, {options.pool} recognisers)"
