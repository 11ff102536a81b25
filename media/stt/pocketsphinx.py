"""Offline streaming STT with pocketsphinx 5 (the wheel's bundled en-us model).

Two modes:

- `phrases` given: a JSGF grammar of exactly those phrases. A turn's final result is one
  of the phrases, as the caller wrote it ("What time is it?"), or None when the decoder
  did not reach the end of any phrase. A plain grammar forces any speech onto the nearest
  phrase ("uh huh" becomes "hello"). With `garbage="words"` (or the older
  `reject_out_of_grammar=True`) a loop of common short words, fillers and backchannels
  competes with the phrases, entered with weight `garbage_weight`, so speech that is not a
  phrase takes the loop and is rejected; `garbage="phones"` makes the loop of the model's
  39 phones instead (measured worse: it beats the phrases of synthetic voices too). A
  rejected turn's result is `Transcript(unrecognised)` when `unrecognised` is given (the
  demo answers it "Sorry, I didn't catch that"), else None, as for a turn with no words.
- no phrases: the open en-us language model. Weak on synthetic speech; use it for
  "some words were said", not for exact text.

Digital silence (exact zeros, which espeak and muted phone lines produce) breaks the
decoder's feature normalisation: with the grammar, espeak phrases padded with zeros
came out exact only 13 of 25 times. So every frame gets a fixed, seeded noise floor
(`noise_floor`, standard deviation 64, about -54 dBFS) before decoding; with it, 25 of
25 (5 phrases x 5 espeak voices) and 79-80 of 80 (8 voices x 2 speeds, speech at full
and at -20 dB level). The noise is the same every run: results are reproducible.

Decoders take 50-300 ms to create, blocking whatever thread creates them, so a call
must never create one mid-call on the event loop. Another thread does not help: creation
holds the GIL (measured: the main thread stalled 96 ms while a thread made one). A decoder holds one utterance's state,
so the engine keeps a pool and a stream holds a decoder only from the first frame of an
utterance to its end (`end_of_turn`): decoders are needed per *speaking* caller, not per
call. The pool is filled at start-up (`pool_size`); if more callers speak at once, one
more decoder is made (logged) and kept.

Measured (this machine; espeak speech in 20 ms frames, 6 voices x the 8 demo phrases
"what time is it", "tell me a story", "goodbye", "operator", "hello", "thank you", "yes",
"no"; 8 other sentences for rejection):

| mode | real-time factor | worst feed() | exact | others rejected |
|---|---|---|---|---|
| grammar | 0.013-0.016x | 0.9-9 ms | 48/48 | forced onto a phrase unless the path is incomplete |
| grammar + `reject_out_of_grammar` (before: 9 words, 1e-8, lattice) | 0.03-0.045x | 1-9 ms | 43/48 | 47/48 |
| open vocabulary | 0.21x | 26-27 ms | 22/48 | - |

On a larger set (benchmarks/demo_grammar.py: 6 espeak-ng voices, piper, and recorded
human prompts, 62 phrases and 395 other utterances; figures in benchmarks/README.md, "The
demo's grammar") the plain grammar keeps 62/62 phrases but rejects only a third of the
other speech; the `garbage="words"` loop (weight 1e-14) rejects nine in ten and keeps 57
of the 62 phrases, on a caller's first turn as on later ones. The lattice the decoder builds
for its final result by default cost 0.28-0.34x real time at the end of each turn once a
garbage loop was on; the Viterbi path (`bestpath` off, set whenever a loop is) costs
nothing there, and the loop costs 0.026-0.034x real time while the caller speaks.

(worst feed() varies with machine load.) Engine start-up 100-330 ms; each further pooled decoder 50 ms (grammar) or 125-165 ms (open).
The open mode's occasional 26 ms feed() is longer than a frame: fine for one call, but
a server running many open-vocabulary calls on one event loop will feel it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from media.frames import SAMPLE_RATE
from media.stt.base import Transcript, check_frame

__all__ = ["PocketSphinxSTT", "PocketSphinxStream", "PocketSphinxOptions", "Options", "create",
           "describe", "normalize_phrase"]

log = logging.getLogger(__name__)

_INSTALL = "install it with `pip install pocketsphinx` (5.x ships the en-us model)"
# Common short words, fillers and backchannels for the out-of-grammar loop; more words cost
# more CPU. (No "go": it ate "goodbye".) The weight was chosen on benchmarks/demo_grammar.py's
# dev split (espeak voices, even-numbered human prompts), counting a phrase wrongly
# accepted as twice as bad as a phrase rejected (the caller just says it again), summed over
# later turns and a call's first turn: of 1e-8 .. 1e-20, 1e-14 did best there (1e-16 a few
# clips behind: better on later turns, worse on first ones; 1e-12 rejected more phrases).
_GARBAGE_WORDS = "a and are be can do for i the uh um huh hmm oh okay yeah so well".split()
_GARBAGE_WEIGHT = 1e-14
# The en-us model's phones (CMU set), each a dictionary word of its own for the phone loop.
_PHONES = ("AA AE AH AO AW AY B CH D DH EH ER EY F G HH IH IY JH K L M N NG OW OY P R S SH "
           "T TH UH UW V W Y Z ZH").split()
_PHONE_PREFIX = "garbage_"  # dictionary words of the phone loop: garbage_aa, garbage_ae, ...
GARBAGE_KINDS = ("words", "phones")
_DEFAULT_WEIGHTS = {"words": _GARBAGE_WEIGHT, "phones": 1e-17}  # (phones: the best of 1e-8..1e-30)
# Cepstral mean normalisation's starting point for a caller's first turn (later turns start
# from the caller's own, kept by the stream). The model's default (c0 40) is far below the
# level of our input (the noise floor added, speech near full scale): a first turn began
# so mismatched that a garbage loop took 22 of 48 espeak phrases (26/48 exact). c0 52 is what
# the callers' normalisation settles at, measured: 52.2-53.9 for 3 espeak voices, 52.4 for the
# recorded human prompts; from it the first turn gets 41/48 (plain grammar 48/48, was 46/48).
_CMN_DEFAULT = "40,3,-1,0,0,0,0,0,0,0,0,0,0"
_CMN_GRAMMAR = "52,0,0,0,0,0,0,0,0,0,0,0,0"
_NOISE_SECONDS = 1
_PARTIAL_EVERY = 5  # frames between partial hypotheses (100 ms)


def normalize_phrase(phrase: str) -> str:
    """Lower-case words only, the form the grammar and the dictionary use."""
    return " ".join(re.findall(r"[a-z0-9']+", phrase.lower()))


class PocketSphinxSTT:
    """The engine: created once per process; `new_stream()` per call."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        phrases: list[str] | None = None,
        *,
        reject_out_of_grammar: bool = False,
        garbage: str | None = None,
        garbage_weight: float | None = None,
        garbage_words: list[str] | None = None,
        unrecognised: str | None = None,
        decoder_options: dict[str, Any] | None = None,
        noise_floor: float = 64.0,
        partials: bool = True,
        model_dir: str | None = None,
        pool_size: int = 4,
    ) -> None:
        if garbage is None and reject_out_of_grammar:
            garbage = "words"
        if garbage is not None and garbage not in GARBAGE_KINDS:
            raise ValueError(f"garbage={garbage!r}: use one of {', '.join(GARBAGE_KINDS)}")
        self.garbage = garbage
        self.reject_out_of_grammar = garbage is not None
        self.garbage_weight = (garbage_weight if garbage_weight is not None
                               else _DEFAULT_WEIGHTS.get(garbage or "", _GARBAGE_WEIGHT))
        self.garbage_words = list(garbage_words) if garbage_words else list(_GARBAGE_WORDS)
        self.unrecognised = unrecognised
        self.decoder_options = dict(decoder_options or {})
        if garbage is not None:
            # The final hypothesis from the Viterbi path, not a lattice: with a garbage loop
            # the lattice made end_of_turn cost 0.34x the turn's length (a 3 s turn held the
            # event loop for a second), for no better result.
            self.decoder_options.setdefault("bestpath", False)
        self.partials = partials
        self._model_dir = model_dir
        self._phrases: dict[str, str] = {}
        for p in phrases or []:
            key = normalize_phrase(p)
            if not key:
                raise ValueError(f"phrase {p!r} has no words")
            self._phrases.setdefault(key, p)
        if phrases is not None and not self._phrases:
            raise ValueError("phrases is an empty list; pass None for open vocabulary")
        rng = np.random.default_rng(20240607)
        noise = np.round(rng.normal(0.0, noise_floor, SAMPLE_RATE * _NOISE_SECONDS))
        self._noise = np.tile(noise.astype(np.int32), 2)  # wrap-free slices up to 1 s
        self._pool: list[Any] = []
        self._grammar: str | None = None
        self.check()
        self._pool.extend(self._new_decoder() for _ in range(max(1, pool_size)))

    @property
    def phrases(self) -> list[str]:
        return list(self._phrases.values())

    # -- start-up ----------------------------------------------------------------------
    def check(self) -> None:
        """Raise RuntimeError naming what is missing (package, model files, words)."""
        try:
            import pocketsphinx
        except ImportError as e:
            raise RuntimeError(f"pocketsphinx is not installed: {_INSTALL}") from e
        hmm, dic, lm = self._model_paths(pocketsphinx)
        missing = [p for p in ([hmm, dic] + ([] if self._phrases else [lm])) if not os.path.exists(p)]
        if missing:
            raise RuntimeError(f"pocketsphinx model files missing: {', '.join(missing)}; {_INSTALL}")

    def _model_paths(self, pocketsphinx: Any) -> tuple[str, str, str]:
        base = self._model_dir or pocketsphinx.get_model_path("en-us")
        return (os.path.join(base, "en-us"), os.path.join(base, "cmudict-en-us.dict"),
                os.path.join(base, "en-us.lm.bin"))

    def _new_decoder(self) -> Any:
        import pocketsphinx

        hmm, dic, lm = self._model_paths(pocketsphinx)
        if not self._phrases:
            return pocketsphinx.Decoder(hmm=hmm, dict=dic, lm=lm, loglevel="FATAL")
        dec = pocketsphinx.Decoder(hmm=hmm, dict=dic, lm=None, loglevel="FATAL",
                                   **self.decoder_options)
        if self.garbage == "phones":
            for i, phone in enumerate(_PHONES):  # (update the search once, at the last)
                dec.add_word(_PHONE_PREFIX + phone.lower(), phone, i == len(_PHONES) - 1)
        if self._grammar is None:
            self._grammar = self._build_grammar(dec)
        dec.set_cmn(_CMN_GRAMMAR)
        try:
            dec.add_jsgf_string("phrases", self._grammar)
        except ValueError as e:
            raise RuntimeError(f"pocketsphinx rejected the phrase grammar: {e}") from e
        dec.activate_search("phrases")
        return dec

    def _build_grammar(self, dec: Any) -> str:
        words = {w for key in self._phrases for w in key.split()}
        unknown = sorted(w for w in words if dec.lookup_word(w) is None)
        if unknown:
            raise ValueError(
                f"words not in the pocketsphinx en-us dictionary: {', '.join(unknown)}; "
                "spell them as dictionary words or drop those phrases"
            )
        alts = " | ".join(f"( {key} )" for key in self._phrases)
        grammar = "#JSGF V1.0;\ngrammar phrases;\n"
        if self.garbage is None:
            return grammar + f"public <utt> = {alts};\n"
        if self.garbage == "phones":
            garbage = [_PHONE_PREFIX + p.lower() for p in _PHONES]
        else:
            garbage = [w for w in self.garbage_words if w not in self._phrases]
            unknown = [w for w in garbage if dec.lookup_word(w) is None]
            if unknown:
                raise ValueError(f"garbage words not in the dictionary: {', '.join(unknown)}")
        return grammar + (
            f"<other> = {' | '.join(garbage)};\n"
            f"public <utt> = /1/ ( {alts} ) | /{self.garbage_weight:g}/ <other>+;\n"
        )

    # -- streams -----------------------------------------------------------------------
    def new_stream(self) -> PocketSphinxStream:
        return PocketSphinxStream(self)

    def _acquire(self) -> Any:
        if self._pool:
            return self._pool.pop()
        log.warning("pocketsphinx: more callers speaking at once than pooled decoders; "
                    "creating one more (blocks for 50-300 ms)")
        return self._new_decoder()

    def _release(self, dec: Any) -> None:
        dec.set_cmn(_CMN_GRAMMAR if self._phrases else _CMN_DEFAULT)
        self._pool.append(dec)

    def _with_noise(self, frame: np.ndarray, pos: int) -> np.ndarray:
        n = len(frame)
        period = len(self._noise) // 2
        if n <= period:
            noise = self._noise[pos : pos + n]
        else:
            noise = np.resize(np.roll(self._noise[:period], -pos), n)
        return np.clip(frame.astype(np.int32) + noise, -32768, 32767).astype(np.int16)

    def _partial(self, text: str) -> str:
        """A partial hypothesis as reported: the phone loop's tokens are not words."""
        if self.garbage != "phones":
            return text
        return " ".join(w for w in text.split() if not w.startswith(_PHONE_PREFIX))

    def _final(self, text: str) -> Transcript | None:
        text = text.strip()
        if not text:
            return None
        if self._phrases:
            phrase = self._phrases.get(normalize_phrase(text))
            if phrase is None:
                log.debug("pocketsphinx: %r is not a whole phrase; %s", text,
                          "no result" if self.unrecognised is None
                          else f"reported as {self.unrecognised!r}")
                return None if self.unrecognised is None else Transcript(self.unrecognised, True)
            return Transcript(phrase, True)
        return Transcript(text, True)


class PocketSphinxStream:
    """One call's recogniser. Not thread-safe (nothing here uses threads)."""

    def __init__(self, engine: PocketSphinxSTT) -> None:
        self._engine = engine
        self._dec: Any | None = None  # held only during an utterance
        self._cmn: str | None = None  # this caller's channel normalisation, kept between turns
        self._closed = False
        self._in_utt = False
        self._frames = 0
        self._noise_pos = 0
        self._last_partial = ""

    def feed(self, frame: np.ndarray) -> list[Transcript]:
        self._check_open()
        check_frame(frame)
        if not len(frame):
            return []
        if not self._in_utt:
            self._dec = self._engine._acquire()
            if self._cmn is not None:
                self._dec.set_cmn(self._cmn)
            self._dec.start_utt()
            self._in_utt = True
        dec = self._dec
        pcm = self._engine._with_noise(frame, self._noise_pos)
        self._noise_pos = (self._noise_pos + len(frame)) % (len(self._engine._noise) // 2)
        dec.process_raw(pcm.tobytes())
        self._frames += 1
        if not self._engine.partials or self._frames % _PARTIAL_EVERY:
            return []
        hyp = dec.hyp()
        text = self._engine._partial(hyp.hypstr.strip()) if hyp is not None else ""
        if text and text != self._last_partial:
            self._last_partial = text
            return [Transcript(text, False)]
        return []

    def end_of_turn(self) -> Transcript | None:
        self._check_open()
        if not self._in_utt:
            return None
        dec, self._dec = self._dec, None
        dec.end_utt()
        hyp = dec.hyp()
        self._cmn = dec.get_cmn()
        self._engine._release(dec)
        self._in_utt = False
        self._frames = 0
        self._noise_pos = 0
        self._last_partial = ""
        return self._engine._final(hyp.hypstr if hyp is not None else "")

    def close(self) -> None:
        self._closed = True
        dec, self._dec = self._dec, None
        if dec is None:
            return
        if self._in_utt:
            dec.end_utt()
            self._in_utt = False
        self._engine._release(dec)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this STT stream is closed")


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
