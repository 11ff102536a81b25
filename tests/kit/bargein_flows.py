"""Barge-in flows: the way calls really go, for the detector and the voice loop.

A flow is one agent reply of a call as the barge-in detector meets it. The caller spoke
first (the agent was silent: the detector does not run then), the agent replies, and the
caller either talks over the reply 0.1-2.5 s in, or makes a noise, or stays quiet while
the agent's echo comes back. `first` flows are the agent's first playout of the call (a
fresh detector); `later` flows come after an earlier reply of 2 s played to the same
detector (echo only, then `reset()`, as the loop does when playout stops).

Lines: `clean` (no echo), `echo40` (10 dB down at 40 ms), `echo120` (6 dB down at 120 ms),
`echo200` (12 dB down at 200 ms), `moved` (the echo path jumps from 40 to 120 ms and 4 dB
louder half a second into the reply), `phone` (300-3400 Hz, 8 kHz mu-law, echo 10 dB down
at 60 ms). Callers are +6, 0 or -15 dB against the agent.

Voices are split by speaker: `dev` has espeak variants, the agent's own voice and the
recorded voices of Allison (en-US, es-MX) and June (fr-CA) from Debian's Asterisk prompt
packages; `holdout` has other espeak variants, the piper voice and the recorded voices of
Carlo (it-IT, male) and the ru-RU prompt voice. The non-speech kinds are shared; their
draws differ by seed. Tune on `dev` only.

The caller's onset is the audible one: the first 10 ms over the caller channel's noise
floor by 20 dB (without the echo), as the replay report defines it.
"""

from __future__ import annotations

import functools
import glob
import os
import wave
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

from media.bargein import BargeInConfig, BargeInDetector
from media.frames import FRAME_MS, SAMPLE_RATE, split_frames
from tests.kit.bargein_eval import (
    PHONE_DELAY_MS,
    SPEECH_DBFS,
    _at_level,
    _babble,
    _bandpass,
    _chime,
    _click,
    _cough,
    _dtmf,
    _f,
    _fade,
    _music,
    _place,
    _pure_tone,
    _ringback,
    _to_int16,
    _tone,
    phone_channel,
)
from tests.kit.speech import speech, trim_silence

Split = Literal["dev", "holdout"]
ASTERISK = "/usr/share/asterisk"
FLOOR_DBFS = -65.0
LINES = ("clean", "echo40", "echo120", "echo200", "moved", "phone")
LEVELS_DB = (6.0, 0.0, -15.0)
OFFSETS_S = (0.1, 0.25, 0.5, 1.0, 1.8, 2.5)
AGENT_VOICE = ("en-us", 165, 50)
AGENT_TEXTS = (
    "Sure. I can move your booking to Thursday morning, and the fee is waived this time. "
    "Shall I also send the new confirmation to the email address we have on file?",
    "Thanks for waiting. Your refund of forty two dollars was approved today and should "
    "reach your card within five working days. Is there anything else I can help with?",
)
CALLER_TEXTS = (
    "Wait, that is not what I asked for.",
    "No, stop, I want to speak to someone.",
    "Sorry, can you say that again?",
    "Actually I need a different day.",
    "Hold on, my number changed last week.",
)
_SPLITS: dict[str, dict] = {
    "dev": {
        "seed": 2026,
        "espeak": ("en+f3", "en+m3", "en-gb", "en+f2", "en+m7", "en-us+f4"),
        "recorded": ("en_US_f_Allison", "es_MX_f_Allison", "fr_CA_f_June"),
        "piper": False,
    },
    "holdout": {
        "seed": 777001,
        "espeak": ("en+m1", "en-029", "en-gb-scotland", "en+f4", "en-us-nyc", "en+m5"),
        "recorded": ("it_IT_m_Carlo", "ru_RU_f_IvrvoiceRU"),
        "piper": True,
    },
}
NONSPEECH = ("click", "cough", "door", "white", "babble", "dtmf", "tone", "ringback",
             "ringing", "alarm", "chime", "music", "moh", "echo")


@dataclass(frozen=True)
class Flow:
    name: str
    kind: str  # "speech" or the kind of non-speech
    voice: str  # caller voice ("" for non-speech)
    line: str
    later: bool  # an earlier reply was played to the same detector first
    agent: np.ndarray  # agent audio as played, from the detector's first frame, int16
    caller: np.ndarray  # caller channel (caller + echo + floor, through the line), int16
    onset_ms: float | None  # audible onset of the caller's speech, from the first frame
    reply_start_ms: float  # where the reply under test starts (0 for first flows)


# -- sources ------------------------------------------------------------------------------

def _recorded_files(speaker: str) -> list[str]:
    files = sorted(glob.glob(os.path.join(ASTERISK, "sounds", speaker, "*.wav")))
    out = []
    for path in files:
        with wave.open(path) as w:
            if 1.2 <= w.getnframes() / w.getframerate() <= 4.0:
                out.append(path)
    if not out:
        raise RuntimeError(f"recorded voice {speaker} not installed: run make system-deps "
                           "(asterisk-core-sounds-*-wav)")
    return out


def _read_array(pcm: np.ndarray, rate: int) -> np.ndarray:
    x = pcm.astype(np.float32) / 32768.0
    if rate != SAMPLE_RATE:
        x = soxr.resample(x, rate, SAMPLE_RATE)
    return _to_int16(x * 32768.0)


@functools.lru_cache(maxsize=512)
def _read_wav(path: str) -> np.ndarray:
    with wave.open(path) as w:
        rate, n = w.getframerate(), w.getnframes()
        pcm = np.frombuffer(w.readframes(n), dtype=np.int16)
        if w.getnchannels() > 1:
            pcm = pcm.reshape(-1, w.getnchannels())[:, 0]
    return _read_array(pcm, rate)


@functools.lru_cache(maxsize=64)
def _piper(text: str) -> np.ndarray:
    from piper import SynthesisConfig

    from media.tts.piper import PiperTTS  # (heavy: only the holdout flows need it)

    tts = PiperTTS()
    voice, phrases = tts._phonemize(text)
    # no noise: piper's sampling is otherwise random, and the flows must be the same on
    # every run (a comparison of two runs would see the voice change, not the code)
    still = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    pcm = np.concatenate([np.asarray(voice.phoneme_ids_to_audio(voice.phonemes_to_ids(p),
                                                                still)).reshape(-1)
                          for p in phrases])
    pcm = np.rint(np.clip(pcm, -1.0, 1.0) * 32767.0).astype(np.int16)
    return _f(_read_array(pcm, voice.config.sample_rate))


def _caller_speech(voice: str, text: str, rng: np.random.Generator) -> np.ndarray:
    if voice.startswith("rec:"):
        files = _recorded_files(voice[4:])
        return _f(trim_silence(_read_wav(files[int(rng.integers(len(files)))]), 100))
    if voice == "piper":
        return _f(trim_silence(_piper(text), 100))
    if voice == "agent":
        v, _, p = AGENT_VOICE
        return _f(trim_silence(speech(text, voice=v, speed=int(rng.integers(150, 190)),
                                      pitch=p)))
    return _f(trim_silence(speech(text, voice=voice, speed=int(rng.integers(140, 210)),
                                  pitch=int(rng.integers(25, 75)))))


def _door(rng: np.random.Generator) -> np.ndarray:
    """A door slam: a low thump with a rattle, sharp attack, 300 ms decay."""
    n = int(0.35 * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    thump = np.sin(2 * np.pi * rng.uniform(50, 110) * t) * np.exp(-t / 0.06)
    rattle = _bandpass(rng.standard_normal(n), 200, 3000) * np.exp(-t / 0.03) * 0.4
    return thump + rattle


def _alarm(rng: np.random.Generator) -> np.ndarray:
    """An alarm clock: square-ish beeps, 4 per second, for 2 s."""
    f = float(rng.uniform(2000, 3200))
    beep = _fade(_tone([f, 3 * f], 0.08, [1.0, 0.3]), 2)
    gap = np.zeros(int(0.045 * SAMPLE_RATE))
    return np.tile(np.concatenate((beep, gap)), 16)


def _ringing(rng: np.random.Generator) -> np.ndarray:
    """A phone ringing in the room: a bell warbling at 20 Hz, 1.5 s."""
    t = np.arange(int(1.5 * SAMPLE_RATE)) / SAMPLE_RATE
    f = float(rng.uniform(800, 1400))
    warble = 0.5 + 0.5 * np.sign(np.sin(2 * np.pi * 20 * t))
    return _fade((np.sin(2 * np.pi * f * t) + 0.5 * np.sin(2 * np.pi * 1.5 * f * t)) * warble, 5)


def _moh(rng: np.random.Generator) -> np.ndarray:
    """Two seconds of recorded music (Debian's asterisk-moh-opsound-wav)."""
    files = sorted(glob.glob(os.path.join(ASTERISK, "moh", "*.wav")))
    if not files:
        raise RuntimeError("music on hold not installed: run make system-deps")
    x = _f(_read_wav(files[int(rng.integers(len(files)))]))
    at = int(rng.integers(0, len(x) - 2 * SAMPLE_RATE))
    return x[at : at + 2 * SAMPLE_RATE]


# -- the line -----------------------------------------------------------------------------

def _echo_of(agent: np.ndarray, line: str, move_at: int, rng: np.random.Generator) -> np.ndarray:
    def delayed(ms: int, db: float) -> np.ndarray:
        taps = rng.standard_normal(int(rng.integers(8, 40)))
        taps = taps * np.exp(-np.arange(len(taps)) / 8.0)
        taps[0] = 1.0
        x = np.convolve(agent, taps / np.sqrt(np.sum(taps**2)))[: len(agent)]
        return _place(len(agent), x, int(ms * SAMPLE_RATE / 1000)) * 10 ** (db / 20)

    if line in ("clean",):
        return np.zeros(len(agent))
    if line == "echo40":
        return delayed(40, -10.0)
    if line == "echo120":
        return delayed(120, -6.0)
    if line == "echo200":
        return delayed(200, -12.0)
    if line == "phone":
        return delayed(60, -10.0)
    if line == "moved":
        a, b = delayed(40, -10.0), delayed(120, -6.0)
        return np.concatenate((a[:move_at], b[move_at:]))
    raise ValueError(line)


def _agent_reply(rng: np.random.Generator, seconds: float) -> np.ndarray:
    v, s, p = AGENT_VOICE
    text = AGENT_TEXTS[int(rng.integers(len(AGENT_TEXTS)))]
    x = _at_level(_f(trim_silence(speech(text, voice=v, speed=s, pitch=p))), SPEECH_DBFS)
    return x[: int(seconds * SAMPLE_RATE)]


def audible_onset_ms(clean: np.ndarray) -> float | None:
    """The first 10 ms window over the channel's noise floor (its 10th percentile of 10 ms
    windows) by 20 dB (None: none is)."""
    n = len(clean) // 160
    p = np.mean(_f(clean[: n * 160]).reshape(n, 160) ** 2, axis=1)
    thr = max(float(np.percentile(p, 10)), 1.0) * 100.0
    hit = np.flatnonzero(p > thr)
    return None if len(hit) == 0 else float(hit[0] * 10)


def _flow(name: str, kind: str, voice: str, line: str, later: bool, sig: np.ndarray | None,
          at_s: float, rng: np.random.Generator) -> Flow:
    reply_s = 3.2
    reply = _agent_reply(rng, reply_s)
    pre = int(2.6 * SAMPLE_RATE) if later else 0  # earlier reply (2 s) + 0.6 s quiet
    agent = np.zeros(pre + len(reply))
    if later:
        agent[: 2 * SAMPLE_RATE] = _agent_reply(rng, 2.0)[: 2 * SAMPLE_RATE]
    agent[pre:] = reply
    total = len(agent)
    move_at = pre + int(0.5 * SAMPLE_RATE)
    clean = rng.standard_normal(total) * 32768.0 * 10 ** (FLOOR_DBFS / 20)
    if sig is not None:
        clean += _place(total, sig, pre + int(at_s * SAMPLE_RATE))
    ch = clean + _echo_of(agent, line, move_at, rng)
    onset = audible_onset_ms(_to_int16(clean)) if kind == "speech" else None
    if line == "phone":
        ch = phone_channel(ch)
        onset = None if onset is None else onset + PHONE_DELAY_MS
    return Flow(name, kind, voice, line, later, _to_int16(agent), _to_int16(ch), onset,
                pre * 1000.0 / SAMPLE_RATE)


def build_flows(split: Split = "dev", seed: int | None = None) -> list[Flow]:
    """Speech flows (every voice on every line, level and offset drawn per flow, first and
    later replies) and must-not-interrupt flows (every non-speech kind on every line)."""
    cfg = _SPLITS[split]
    rng = np.random.default_rng(cfg["seed"] if seed is None else seed)
    voices = list(cfg["espeak"]) + ["agent"] + [f"rec:{r}" for r in cfg["recorded"]]
    if cfg["piper"]:
        voices.append("piper")
    flows: list[Flow] = []
    i = 0
    for voice in voices:
        for line in LINES:
            for later in (False, True):
                level = LEVELS_DB[i % len(LEVELS_DB)]
                at = OFFSETS_S[(i // 2) % len(OFFSETS_S)]
                text = CALLER_TEXTS[i % len(CALLER_TEXTS)]
                sig = _at_level(_caller_speech(voice, text, rng), SPEECH_DBFS + level)
                flows.append(_flow(f"speech-{i:03d}-{voice}-{line}-{level:+.0f}dB-{at}s"
                                   f"{'-later' if later else ''}", "speech", voice, line,
                                   later, sig, at, rng))
                i += 1
    makers = {
        "click": lambda: _at_level(_click(rng), SPEECH_DBFS + 3),
        "cough": lambda: _at_level(_cough(rng), SPEECH_DBFS + 3),
        "door": lambda: _at_level(_door(rng), SPEECH_DBFS + 6),
        "white": lambda: _at_level(rng.standard_normal(3 * SAMPLE_RATE), SPEECH_DBFS - 15),
        "babble": lambda: _at_level(_babble(("The meeting moved to the third floor",
                                             "She bought apples and pears",
                                             "We should leave before the traffic",
                                             "The train was late again"),
                                            ["en-us", "en+f3", "en+m3", "en-gb"], rng,
                                            3 * SAMPLE_RATE), SPEECH_DBFS - 15),
        "dtmf": lambda: _at_level(_dtmf(rng), SPEECH_DBFS - 3),
        "tone": lambda: _at_level(_pure_tone(rng), SPEECH_DBFS - 3),
        "ringback": lambda: _at_level(_ringback(rng), SPEECH_DBFS - 3),
        "ringing": lambda: _at_level(_ringing(rng), SPEECH_DBFS),
        "alarm": lambda: _at_level(_alarm(rng), SPEECH_DBFS),
        "chime": lambda: _at_level(_chime(rng), SPEECH_DBFS),
        "music": lambda: _at_level(_music(rng), SPEECH_DBFS),
        "moh": lambda: _at_level(_moh(rng), SPEECH_DBFS - 6),
        "echo": lambda: None,
    }
    j = 0
    for kind, make in makers.items():
        for line in LINES:
            later = bool(j % 2)
            at = float(rng.uniform(0.1, 1.0))
            flows.append(_flow(f"{kind}-{line}{'-later' if later else ''}", kind, "", line,
                               later, make(), at, rng))
            j += 1
    return flows


# -- running ------------------------------------------------------------------------------

def run_flow(flow: Flow, config: BargeInConfig | None = None) -> list[float]:
    """Drive a fresh detector through the flow as the loop does; the times (ms from the
    first frame) at which it fired, a reset after each fire and between the replies."""
    det = BargeInDetector(config)
    fired: list[float] = []
    reply_frame = int(flow.reply_start_ms) // FRAME_MS
    for i, (ref, mic) in enumerate(zip(split_frames(flow.agent), split_frames(flow.caller),
                                       strict=True)):
        if i == reply_frame and i:
            det.reset()
        if flow.later and i < reply_frame and not ref.any():
            continue  # the gap between the replies: the detector does not run
        det.agent_frame(ref, i * FRAME_MS / 1000)
        if det.caller_frame(mic, (i + 1) * FRAME_MS / 1000):
            fired.append((i + 1) * FRAME_MS)
            det.reset()
    return fired


@dataclass
class Score:
    caught: int = 0
    speech: int = 0
    missed: list[str] | None = None
    early: list[str] | None = None  # fired before the caller spoke (speech flows)
    false: list[str] | None = None  # fired on a non-speech flow
    nonspeech: int = 0
    latencies: list[float] | None = None

    def __post_init__(self) -> None:
        self.missed, self.early, self.false, self.latencies = [], [], [], []


def score(flows: list[Flow], config: BargeInConfig | None = None) -> Score:
    s = Score()
    for flow in flows:
        fired = run_flow(flow, config)
        if flow.onset_ms is None:
            s.nonspeech += 1
            if fired:
                s.false.append(f"{flow.name}@{fired[0]:.0f}")
            continue
        s.speech += 1
        before = [t for t in fired if t < flow.onset_ms]
        after = [t for t in fired if t >= flow.onset_ms]
        if before:
            s.early.append(f"{flow.name}@{before[0]:.0f}")
        if after:
            s.caught += 1
            s.latencies.append(after[0] - flow.onset_ms)
        else:
            s.missed.append(flow.name)
    return s
