"""Labelled barge-in evaluation set: caller channel + agent playback reference, seeded.

Every case simulates one stretch of agent playback (an espeak sentence playing from t=0)
with the caller channel = what the caller does + the echo of the agent's audio (delay
0-120 ms, about 10 dB down, sometimes through a short random echo path) + a faint noise
floor. Some cases go through a phone channel (300-3400 Hz band, 8 kHz mu-law round trip)
as a whole, echo included. Speech cases put a real voice (espeak, varied voice, pitch,
speed, level, channel) over the agent at a known onset; the other cases are things that
must not interrupt: clicks, coughs, white noise, babble, DTMF, tones, ringback, chimes,
music-like harmonic tones, and the agent's own echo alone.

`build_cases("dev")` is the set the defaults were tuned on; `build_cases("holdout")` uses
another seed, other sentences and other voices, to check the tuning did not overfit;
`build_cases("redraw")` is dev's voices and sentences with fresh random draws (offsets,
delays, levels, noises), to show how much the figures move with the draw alone.
Shared by tests/media/test_bargein.py and benchmarks/bargein.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import soxr

from media.bargein import BargeInDetector
from media.codecs import ulaw_decode, ulaw_encode
from media.frames import FRAME_MS, SAMPLE_RATE
from tests.kit.speech import speech, trim_silence

Split = Literal["dev", "holdout", "redraw"]

SPEECH_DBFS = -20.0  # active speech level of the agent and of a normal caller
QUIET_DB = -15.0  # quiet callers, relative to SPEECH_DBFS
NOISE_DB = -15.0  # white noise and babble, relative to SPEECH_DBFS
ECHO_DB = -10.0  # echo of the agent, relative to the agent's level
FLOOR_DBFS = -65.0  # faint line noise in every case

ECHO_DELAYS_MS = (0, 20, 40, 60, 80, 100, 120)
WARMUP_MS = 1500  # an earlier agent utterance of the same call, echo only, before the case


@dataclass(frozen=True)
class Case:
    """One labelled stretch of agent playback with the caller channel heard meanwhile."""

    name: str
    kind: str  # "speech", or the kind of non-speech ("click", "babble", "echo", ...)
    caller: np.ndarray  # caller channel, 16 kHz int16 (caller signal + echo + floor)
    agent: np.ndarray  # agent playback reference, 16 kHz int16, same length
    clean: np.ndarray  # the caller channel without the echo (for the plain VAD)
    is_speech: bool
    onset_ms: float | None  # ground-truth speech onset (speech cases only), from the start
    warmup_ms: int  # leading stretch that is an earlier playout (echo only; reset() after it)
    echo_delay_ms: int
    phone: bool


_SPLITS = {
    "dev": {
        "seed": 1234,
        "agent_voice": ("en-us", 165, 50),
        "agent_texts": (
            "Thanks for calling. I can help you with bookings, refunds and changes to an "
            "existing reservation. Before we start, could you tell me your reference number?",
            "Your order was shipped yesterday and should arrive on Thursday. If anything is "
            "missing, I can open a ticket for you right away.",
        ),
        "caller_voices": ("en-us", "en+f3", "en+m3", "en-gb", "en+f2", "en+m7", "en-gb-x-rp",
                          "en+klatt", "en+f1", "en+m2", "en-us+f4", "en+Alicia"),
        "caller_texts": (
            "Wait, that is not what I asked for.",
            "Hello? Can you hear me?",
            "Sorry, I need to change the date.",
            "No, stop, I want a refund.",
            "Actually my number is four two seven.",
        ),
        "babble_texts": (
            "The meeting moved to the third floor next week",
            "She bought apples and pears at the market",
            "We should leave before the traffic gets worse",
            "Please remember to bring the signed forms",
            "The train was late again this morning",
            "He plays the piano every evening after dinner",
        ),
    },
    "holdout": {
        "seed": 98765,
        "agent_voice": ("en-gb", 175, 45),
        "agent_texts": (
            "Good afternoon. Your appointment is confirmed for Monday at ten thirty in the "
            "morning. Please bring a photo identity document with you.",
            "I have found three flights that match. The first leaves at seven fifteen and "
            "costs two hundred and forty dollars including taxes.",
        ),
        "caller_voices": ("en-us+f5", "en+m1", "en-029", "en-gb-scotland", "en+f4", "en+m5",
                          "en-us-nyc", "en+Andy", "en+m6", "en+Annie", "en+klatt3", "en+m4"),
        "caller_texts": (
            "Hold on a second please.",
            "Yes, that works for me.",
            "Can I speak to a real person?",
            "I did not get that, repeat it.",
            "Cancel it, cancel the whole thing.",
        ),
        "babble_texts": (
            "Somebody left the window open in the kitchen",
            "The children are playing football in the park",
            "Our flight was delayed by almost two hours",
            "I will call you back after the lunch break",
            "They painted the fence a bright shade of green",
            "Most of the shops close early on Sunday",
        ),
    },
}

_SPLITS["redraw"] = {**_SPLITS["dev"], "seed": 777}


# -- signal helpers ---------------------------------------------------------------------

def _f(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


def _active_rms(x: np.ndarray) -> float:
    """RMS over the louder parts (frames within 30 dB of the loudest), like a speech level."""
    n = len(x) // 320
    if n == 0:
        return float(np.sqrt(np.mean(x**2)) + 1e-12)
    p = np.mean(x[: n * 320].reshape(n, 320) ** 2, axis=1)
    act = p[p > p.max() * 1e-3]
    return float(np.sqrt(np.mean(act)) + 1e-12)


def _at_level(x: np.ndarray, dbfs: float) -> np.ndarray:
    return x * (32768.0 * 10 ** (dbfs / 20) / _active_rms(x))


def _to_int16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def _bandpass(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Zero-phase band-pass by an FFT mask with short raised-cosine edges."""
    n = len(x)
    spec = np.fft.rfft(x)
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    edge = 100.0
    mask = np.clip((f - (lo - edge)) / edge, 0, 1) * np.clip(((hi + edge) - f) / edge, 0, 1)
    mask = 0.5 - 0.5 * np.cos(np.pi * mask)
    return np.fft.irfft(spec * mask, n)


PHONE_DELAY_MS = 10  # the phone channel's filters are made causal by this much delay


def phone_channel(x: np.ndarray) -> np.ndarray:
    """300-3400 Hz band, down to 8 kHz, mu-law round trip, back to 16 kHz (float in/out).

    The band-pass and resamplers are linear-phase; delaying the result by PHONE_DELAY_MS
    makes the whole channel causal, as a real line is.
    """
    band = _bandpass(x, 300, 3400)
    low = soxr.resample(band.astype(np.float32) / 32768.0, SAMPLE_RATE, 8000)
    coded = ulaw_decode(ulaw_encode(_to_int16(low * 32768.0)))
    up = soxr.resample(coded.astype(np.float32) / 32768.0, 8000, SAMPLE_RATE)
    return _place(len(x), up * 32768.0, int(PHONE_DELAY_MS * SAMPLE_RATE / 1000))


def _place(total: int, x: np.ndarray, at: int) -> np.ndarray:
    out = np.zeros(total)
    end = min(total, at + len(x))
    if end > at:
        out[at:end] = x[: end - at]
    return out


def _tone(freqs: list[float], dur_s: float, amps: list[float] | None = None) -> np.ndarray:
    t = np.arange(int(dur_s * SAMPLE_RATE)) / SAMPLE_RATE
    amps = amps or [1.0] * len(freqs)
    return sum(a * np.sin(2 * np.pi * f * t) for f, a in zip(freqs, amps, strict=True))


def _fade(x: np.ndarray, ms: float = 5.0) -> np.ndarray:
    n = min(len(x) // 2, int(ms * SAMPLE_RATE / 1000))
    if n:
        ramp = np.linspace(0, 1, n)
        x = x.copy()
        x[:n] *= ramp
        x[-n:] *= ramp[::-1]
    return x


# -- non-speech sources -------------------------------------------------------------------

def _click(rng: np.random.Generator) -> np.ndarray:
    """A 100 ms clatter: a few sharp transients with a short resonant ring."""
    n = int(0.1 * SAMPLE_RATE)
    x = np.zeros(n)
    for _ in range(rng.integers(1, 4)):
        at = int(rng.integers(0, n - 400))
        ring = np.exp(-np.arange(400) / rng.uniform(20, 80))
        ring *= np.sin(2 * np.pi * rng.uniform(800, 4000) * np.arange(400) / SAMPLE_RATE)
        x[at : at + 400] += ring * rng.uniform(0.5, 1.0)
    return x


def _cough(rng: np.random.Generator) -> np.ndarray:
    """A cough-like burst: 100-200 ms of shaped noise, sharp attack, decaying."""
    n = int(rng.uniform(0.1, 0.2) * SAMPLE_RATE)
    noise = rng.standard_normal(n)
    noise = _bandpass(noise, rng.uniform(150, 400), rng.uniform(2500, 5000))
    env = np.minimum(np.arange(n) / 80.0, 1.0) * np.exp(-np.arange(n) / (n / 3))
    return noise * env


def _babble(texts: tuple[str, ...], voices: list[str], rng: np.random.Generator,
            total: int) -> np.ndarray:
    """Several voices reversed and overlapped: speech-shaped but nobody talking to us."""
    out = np.zeros(total)
    for text, voice in zip(texts, voices, strict=False):
        s = _f(trim_silence(speech(text, voice=voice, speed=int(rng.integers(150, 200)))))
        s = _at_level(s[::-1], SPEECH_DBFS)
        s = np.tile(s, 1 + total // max(1, len(s)))
        start = int(rng.integers(0, len(s) - total + 1))
        out += s[start : start + total]
    return out


def _dtmf(rng: np.random.Generator) -> np.ndarray:
    lows, highs = (697, 770, 852, 941), (1209, 1336, 1477)
    parts = []
    for _ in range(int(rng.integers(6, 11))):
        f = [float(rng.choice(lows)), float(rng.choice(highs))]
        parts += [_fade(_tone(f, 0.1)), np.zeros(int(0.1 * SAMPLE_RATE))]
    return np.concatenate(parts)


def _ringback(rng: np.random.Generator) -> np.ndarray:
    """North American ringback: 440 + 480 Hz, 2 s on (we see the start of the cadence)."""
    return _fade(_tone([440.0, 480.0], 2.0), 10)


def _pure_tone(rng: np.random.Generator) -> np.ndarray:
    f = [float(rng.choice([350.0, 425.0, 1000.0, 1400.0, 2100.0]))]
    if rng.random() < 0.3:
        f.append(440.0)  # dial tone 350 + 440
    return _fade(_tone(f, float(rng.uniform(1.0, 2.0))), 10)


def _chime(rng: np.random.Generator) -> np.ndarray:
    """Two or three bell strikes: inharmonic partials, sharp attack, exponential decay."""
    parts = []
    for _ in range(int(rng.integers(2, 4))):
        f0 = float(rng.uniform(400, 900))
        dur = float(rng.uniform(0.5, 0.9))
        t = np.arange(int(dur * SAMPLE_RATE)) / SAMPLE_RATE
        partials = ((1.0, 1.0), (2.76, 0.5), (5.4, 0.25), (8.93, 0.12))
        bell = sum(a * np.sin(2 * np.pi * f0 * r * t) * np.exp(-t * 3 * r ** 0.5)
                   for r, a in partials)
        parts.append(_fade(bell, 2))
    return np.concatenate(parts)


def _music(rng: np.random.Generator) -> np.ndarray:
    """A melody over a held chord: harmonic notes 150-400 ms long, rich in partials."""
    notes = []
    for _ in range(int(rng.integers(6, 10))):
        f0 = 220.0 * 2 ** (int(rng.integers(-5, 13)) / 12)
        dur = float(rng.uniform(0.15, 0.4))
        t = np.arange(int(dur * SAMPLE_RATE)) / SAMPLE_RATE
        note = sum((0.7 ** k) * np.sin(2 * np.pi * f0 * (k + 1) * t) for k in range(6))
        env = np.minimum(t / 0.01, 1.0) * np.exp(-t * rng.uniform(1, 4))
        notes.append(_fade(note * env, 3))
    melody = np.concatenate(notes)
    root = 110.0 * 2 ** (int(rng.integers(0, 7)) / 12)
    chord = _tone([root, root * 1.26, root * 1.5, root * 2], len(melody) / SAMPLE_RATE,
                  [0.5, 0.35, 0.35, 0.25])
    n = min(len(melody), len(chord))  # the chord's length is rounded: a sample short at times
    return melody[:n] + chord[:n]


def _white(rng: np.random.Generator, total: int) -> np.ndarray:
    return rng.standard_normal(total)


# -- assembly -----------------------------------------------------------------------------

def _agent_track(cfg: dict, total: int) -> np.ndarray:
    voice, speed, pitch = cfg["agent_voice"]
    pcm = np.concatenate([
        np.concatenate([_f(trim_silence(speech(t, voice=voice, speed=speed, pitch=pitch))),
                        np.zeros(int(0.25 * SAMPLE_RATE))])
        for t in cfg["agent_texts"]
    ])
    pcm = _at_level(pcm, SPEECH_DBFS)
    reps = 1 + total // len(pcm)
    return np.tile(pcm, reps)[:total]


def _echo(agent: np.ndarray, delay_ms: int, gain_db: float, rng: np.random.Generator,
          shaped: bool) -> np.ndarray:
    """The agent's audio coming back: delayed, attenuated, optionally through a short path."""
    x = agent
    if shaped:
        taps = rng.standard_normal(int(rng.integers(8, 48)))
        taps = taps * np.exp(-np.arange(len(taps)) / 10.0)
        taps[0] = 1.0
        x = np.convolve(x, taps / np.sqrt(np.sum(taps**2)))[: len(agent)]
    d = int(delay_ms * SAMPLE_RATE / 1000)
    return _place(len(agent), x, d) * 10 ** (gain_db / 20)


def _assemble(name: str, kind: str, caller_sig: np.ndarray, agent: np.ndarray,
              onset: int | None, rng: np.random.Generator, echo_delay: int,
              phone: bool, echo: bool = True) -> Case:
    """Prefix the warm-up playout, add echo and floor, pass through the phone channel."""
    warm = int(WARMUP_MS * SAMPLE_RATE / 1000)
    agent = np.concatenate((np.roll(agent, warm)[:warm], agent))
    total = len(agent)
    ch = np.concatenate((np.zeros(warm), caller_sig))
    onset = None if onset is None else onset + warm
    echo_sig = (_echo(agent, echo_delay, ECHO_DB + float(rng.uniform(-2, 2)), rng,
                      shaped=bool(rng.random() < 0.5)) if echo else 0.0)
    ch += rng.standard_normal(total) * 32768.0 * 10 ** (FLOOR_DBFS / 20)
    clean = ch.copy()
    ch += echo_sig
    if phone:
        ch = phone_channel(ch)
        clean = phone_channel(clean)
        onset = None if onset is None else onset + int(PHONE_DELAY_MS * SAMPLE_RATE / 1000)
    return Case(
        name=name, kind=kind, caller=_to_int16(ch), agent=_to_int16(agent),
        clean=_to_int16(clean),
        is_speech=onset is not None,
        onset_ms=None if onset is None else onset * 1000.0 / SAMPLE_RATE,
        warmup_ms=WARMUP_MS, echo_delay_ms=echo_delay, phone=phone,
    )


def build_cases(split: Split = "dev", seed: int | None = None) -> list[Case]:
    """The labelled set: 48 speech-over-agent cases and 83 must-not-interrupt cases.

    `seed` replaces the split's own: a fresh draw of that split's voices and sentences
    (how much the figures move with the draw; `benchmarks/bargein.py --draws`).
    """
    if split not in _SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {sorted(_SPLITS)}")
    cfg = _SPLITS[split]
    rng = np.random.default_rng(cfg["seed"] if seed is None else seed)
    cases: list[Case] = []
    voices = cfg["caller_voices"]
    texts = cfg["caller_texts"]

    # Speech over the agent: every voice in four conditions (normal/quiet x wide/phone),
    # and pitch, speed, onset and echo delay drawn per case.
    conditions = [(0.0, False), (QUIET_DB, False), (0.0, True), (QUIET_DB, True)]
    i = 0
    for voice in voices:
        for level_db, phone in conditions:
            onset_s = float(rng.uniform(0.3, 2.0))
            text = texts[i % len(texts)]
            s = _f(trim_silence(speech(text, voice=voice, speed=int(rng.integers(130, 220)),
                                       pitch=int(rng.integers(20, 80)))))
            s = _at_level(s, SPEECH_DBFS + level_db)
            total = int((onset_s + 1.2) * SAMPLE_RATE)
            agent = _agent_track(cfg, total)
            onset = int(onset_s * SAMPLE_RATE)
            delay = int(rng.choice(ECHO_DELAYS_MS))
            tag = f"{voice}{'-quiet' if level_db else ''}{'-phone' if phone else ''}"
            cases.append(_assemble(f"speech-{i:02d}-{tag}", "speech", _place(total, s, onset),
                                   agent, onset, rng, delay, phone))
            i += 1

    # Must not interrupt. Durations 3 s; sources start somewhere in the first second.
    total = 3 * SAMPLE_RATE
    agent = _agent_track(cfg, total)
    babble_voices = ["en-us", "en+f3", "en+m3", "en-gb", "en+f2", "en+m7"]
    makers = {
        "click": lambda: _at_level(_click(rng), SPEECH_DBFS + 3),
        "cough": lambda: _at_level(_cough(rng), SPEECH_DBFS + 3),
        "white": lambda: _at_level(_white(rng, total), SPEECH_DBFS + NOISE_DB),
        "babble": lambda: _at_level(
            _babble(cfg["babble_texts"], babble_voices, rng, total), SPEECH_DBFS + NOISE_DB),
        "dtmf": lambda: _at_level(_dtmf(rng), SPEECH_DBFS - 3),
        "tone": lambda: _at_level(_pure_tone(rng), SPEECH_DBFS - 3),
        "ringback": lambda: _at_level(_ringback(rng), SPEECH_DBFS - 3),
        "chime": lambda: _at_level(_chime(rng), SPEECH_DBFS),
        "music": lambda: _at_level(_music(rng), SPEECH_DBFS),
        "echo": lambda: np.zeros(1),
    }
    for rep in range(4):
        for kind, make in makers.items():
            for phone in (False, True):
                if kind == "echo" and rep >= 2:
                    continue  # echo-only cases are filled in below with every delay
                sig = make()
                at = 0 if len(sig) >= total else int(rng.integers(0, int(0.9 * SAMPLE_RATE)))
                delay = int(rng.choice(ECHO_DELAYS_MS))
                cases.append(_assemble(f"{kind}-{rep}{'-phone' if phone else ''}", kind,
                                       _place(total, sig, at), agent, None, rng, delay, phone))
    # The agent's own audio alone, at every echo delay (40 ms is the headline case).
    for delay in ECHO_DELAYS_MS:
        cases.append(_assemble(f"echo-{delay}ms", "echo", np.zeros(total), agent, None,
                               rng, delay, phone=False))
    return cases


def play_tick(det: BargeInDetector, i: int, ref: np.ndarray, mic: np.ndarray) -> bool:
    """Tick `i` of a case as the voice loop drives the detector: agent frame `i` starts to
    play at i x 20 ms, and caller frame `i` (which carries the echo) ends 20 ms later."""
    det.agent_frame(ref, i * FRAME_MS / 1000)
    return det.caller_frame(mic, (i + 1) * FRAME_MS / 1000)
