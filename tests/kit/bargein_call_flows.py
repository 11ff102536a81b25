"""Barge-in on whole calls: conversation flows through the voice loop, as the product does it.

`tests/kit/bargein_flows.py` measures the barge-in detector alone. Here each flow is a whole
call replayed under the virtual clock (`gateway.testing.replay_async`) on the shared media
tick, with the demo agent (waiting for the caller to speak first: no greeting), a stubbed
recogniser that answers from a script, and espeak-ng speech behind the TTS cache. What is
measured is what the caller meets: the agent's audio pauses when the detector fires
(`bargein.pause`), and the call either confirms the interruption (`bargein.confirm`,
`interrupt`, `system.control.interrupt`) or resumes the agent where it paused
(`bargein.resume`).

A flow: the caller speaks a first turn (the agent silent); the script hears "tell me a
story" and the demo agent replies with its story (about 32 s: the agent's first playout of
the call). The caller then talks over that reply 0.1-2.5 s after its first frame was
played, or says a backchannel ("uh huh", "yeah", "okay", "mm hmm", "right"; short recorded
words), or makes a non-speech sound, or stays quiet while the line echoes the agent. `later`
flows first have a short exchange (the script hears "hello", the agent answers "Hello! How
can I help you today?"), then a second turn asks for the story, and the barge-in hits that
later reply.

The reply's start depends on the turn end and synthesis, so each flow runs twice under the
deterministic virtual clock: pass 1 has the caller's turns only and finds when the reply's
first frame is played; pass 2 adds the sound there. Pass 2's caller channel is pass 1's up to
just before the sound (spliced), so both calls are the same until then; a flow whose reply
starts elsewhere in pass 2 is reported as a setup failure, never scored.

Lines: `clean`; `echo40` (the agent's audio back 10 dB down 40 ms later), `echo120` (6 dB
down, 120 ms), `echo200` (12 dB down, 200 ms), the echo played by the replay itself from
what the call really played; `phone` (the caller's channel through 300-3400 Hz, 8 kHz
mu-law: `tests.kit.bargein_eval.phone_channel`; no echo). Every channel has a -65 dBFS noise
floor. Callers are +6, 0 or -15 dB against the agent's own speech level.

Voices are split by speaker as in `tests/kit/bargein_flows.py`: `dev` has espeak set A, the
agent's own voice and the recorded Allison (en-US, es-MX) and June (fr-CA) prompt voices;
`holdout` has espeak set B, piper, and the recorded Carlo (it-IT) and ru-RU voices.

Onsets are audible ones: the first 10 ms window of the caller's sound alone (floor and line
included, no echo) over the channel's noise floor by 20 dB; a sound's end is its last such
window.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agent.events import SDKEvent
from agent.session import AgentSession
from gateway.call import CallSettings
from gateway.demo import STORY, DemoAgent
from gateway.testing import ReplayResult, replay_async
from media.frames import FRAME_MS, FRAME_SAMPLES, SAMPLE_RATE
from media.stt import Transcript
from tests.kit.bargein_eval import (
    _active_rms,
    _babble,
    _chime,
    _click,
    _cough,
    _f,
    _music,
    _place,
    _pure_tone,
    _to_int16,
    phone_channel,
)
from tests.kit.bargein_flows import (
    _SPLITS,
    ASTERISK,
    FLOOR_DBFS,
    _alarm,
    _caller_speech,
    _door,
    _moh,
    _read_wav,
    _ringing,
)
from tests.kit.speech import speech, trim_silence

# line -> (echo dB or None, echo delay ms, phone band)
LINES: dict[str, tuple[float | None, float, bool]] = {
    "clean": (None, 40.0, False),
    "echo40": (-10.0, 40.0, False),
    "echo120": (-6.0, 120.0, False),
    "echo200": (-12.0, 200.0, False),
    "phone": (None, 40.0, True),
}
ECHO_LINES = ("echo40", "echo120", "echo200")
LEVELS_DB = (6.0, 0.0, -15.0)
OFFSETS_S = (0.1, 0.25, 0.5, 1.0, 1.8, 2.5)
BACKCHANNELS = ("uh huh", "yeah", "okay", "mm hmm", "right")
# Short recorded words of the prompt voices that sound like backchannels: the letters O
# ("oh"), K ("kay") and M ("em", close to "mm").
RECORDED_BACKCHANNELS = ("letters/o", "letters/k", "letters/m")
NONSPEECH = ("cough", "click", "door", "tone", "ringing", "alarm", "chime", "music", "moh",
             "babble")
# the kinds' levels against the agent's speech level (as tests/kit/bargein_flows.py has them)
NONSPEECH_DB = {"cough": 3.0, "click": 3.0, "door": 6.0, "tone": -3.0, "ringing": 0.0,
                "alarm": 0.0, "chime": 0.0, "music": 0.0, "moh": -6.0, "babble": -15.0}
TURN_TEXTS = (
    "Tell me a story please.",
    "Hello there, I have a question for you.",
    "Could you tell me one of your stories?",
    "Hi, I would like to hear a story.",
)
BARGE_TEXTS = (
    "Wait, that is not what I asked for.",
    "No, stop, I want to speak to someone.",
    "Sorry, can you say that again?",
    "Actually I need a different day.",
    "Hold on, my number changed last week.",
)
FIRST_TURN_AT_S = 0.5  # the caller's first turn starts here
NEXT_TURN_GAP_S = 0.8  # a later flow's second turn: this long after reply 1 was heard
REPLY_WAIT_S = 3.0  # pass 1 runs this long past the last turn (the reply has started by then)
SPLICE_MS = 100  # pass 2 takes pass 1's channel up to this long before the sound
AFTER_SOUND_S = 4.0  # speech flows run this long after the sound (confirmed, or resumed)
TAIL_S = 4.0  # the others run to the end of the reply, plus pauses, plus this
ONSET_OVER_FLOOR_DB = 20.0


class CallerFirstDemo(DemoAgent):
    """The demo agent, waiting for the caller to speak first (no greeting)."""

    async def on_event(self, event: SDKEvent) -> None:
        return None


async def caller_first_demo(session: AgentSession) -> None:
    """Setup handler: the demo agent without its greeting."""
    session.add_node(CallerFirstDemo())
    await session.start()
    await session.wait_until_complete()


class ScriptedSTT:
    """A recogniser stub: the n-th turn of the call is heard as `answers[n]` (then "thank
    you"); free per frame, no interim words (the call confirms barge-ins by duration)."""

    def __init__(self, answers: Iterable[str]) -> None:
        self.answers = list(answers)
        self.turns = 0

    def new_stream(self) -> ScriptedSTT:
        return self

    def feed(self, frame: np.ndarray) -> list[Any]:
        return []

    def end_of_turn(self) -> Transcript:
        text = self.answers[self.turns] if self.turns < len(self.answers) else "thank you"
        self.turns += 1
        return Transcript(text, True)

    def close(self) -> None:
        return None

    def check(self) -> None:
        return None


@functools.lru_cache(maxsize=1)
def agent_tts() -> Any:
    """The agent's voice (espeak-ng, the gateway's default) behind the TTS cache: shared by
    every flow of a process, so each text is synthesized once."""
    from media.tts.cache import CachedTTS
    from media.tts.espeak import EspeakTTS

    return CachedTTS(EspeakTTS())


@dataclass(frozen=True)
class Calibration:
    """The agent as it plays on a clean line: its speech level, and the story's length
    and heard text when played whole."""

    agent_dbfs: float
    story_frames: int
    story_heard: str


@dataclass(eq=False)
class CallFlow:
    name: str
    split: str
    kind: str  # "speech", "backchannel", a non-speech kind (NONSPEECH), or "echo"
    voice: str  # the caller's voice ("" for non-speech and echo)
    line: str
    level_db: float  # the caller's level against the agent's (0 for non-speech and echo)
    offset_s: float  # where the sound starts, after the reply's first played frame
    later: bool  # the reply under test is the agent's second (after a short exchange)
    turns: tuple[np.ndarray, ...]  # the caller's turns before it, float, unit level
    sound: np.ndarray | None  # over the reply, float, unit level (None: nothing)
    sound_db: float  # the sound's level against the agent's
    seed: int
    word: str = ""  # a backchannel's word

    @property
    def answers(self) -> tuple[str, ...]:
        return ("hello", "tell me a story") if self.later else ("tell me a story",)


@dataclass
class Outcome:
    flow: CallFlow
    ok: bool = True  # the flow ran as planned (pass 2's reply started where pass 1's did)
    problem: str = ""
    reply_start_ms: float = 0.0
    onset_ms: float | None = None  # the sound's audible onset and end
    end_ms: float | None = None
    pauses: list[float] = field(default_factory=list)  # bargein.pause times
    resumes: list[tuple[float, float]] = field(default_factory=list)  # (t, paused_ms)
    confirms: list[float] = field(default_factory=list)
    interrupts: list[float] = field(default_factory=list)  # the `interrupt` marks
    interrupt_pauses: list[float] = field(default_factory=list)  # their pauses' times
    full_played: bool | None = None  # the reply played whole (None: it was interrupted)
    events: list[dict[str, Any]] = field(default_factory=list, repr=False)
    channel: np.ndarray | None = field(default=None, repr=False)  # pass 2's caller channel

    # -- derived
    @property
    def early_pauses(self) -> list[float]:
        """Pauses before the caller's sound began (on the echo, or an earlier reply)."""
        start = self.onset_ms if self.onset_ms is not None else float("inf")
        return [t for t in self.pauses if t < start]

    @property
    def sound_pauses(self) -> list[float]:
        if self.onset_ms is None:
            return []
        return [t for t in self.pauses if t >= self.onset_ms]

    @property
    def caught(self) -> bool:
        """A confirmed interruption that answered the caller's sound."""
        return self.onset_ms is not None and any(t >= self.onset_ms for t in self.interrupts)

    @property
    def pause_latency_ms(self) -> float | None:
        """From the audible onset to the first pause at or after it."""
        p = self.sound_pauses
        return None if not p or self.onset_ms is None else p[0] - self.onset_ms

    @property
    def interrupt_latency_ms(self) -> float | None:
        if self.onset_ms is None:
            return None
        after = [t for t in self.interrupts if t >= self.onset_ms]
        return None if not after else after[0] - self.onset_ms

    @property
    def resume_after_end_ms(self) -> float | None:
        """From the sound's end to the resume after its (first) pause."""
        if self.end_ms is None or not self.sound_pauses:
            return None
        after = [t for t, _ in self.resumes if t >= self.sound_pauses[0]]
        return None if not after else after[0] - self.end_ms


# -- sources ------------------------------------------------------------------------------

def _unit(x: np.ndarray) -> np.ndarray:
    """At unit active level (the flow's level is applied against the agent's later)."""
    return _f(x) / _active_rms(_f(x))


def _recorded_word(voice: str, word: str) -> np.ndarray:
    path = os.path.join(ASTERISK, "sounds", voice, word + ".wav")
    return _unit(trim_silence(_read_wav(path), 100))


def _espeak_word(word: str, voice: str, rng: np.random.Generator) -> np.ndarray:
    if voice == "agent":
        return _unit(trim_silence(speech(word, voice="en-us", speed=int(rng.integers(150, 190)))))
    return _unit(trim_silence(speech(word, voice=voice, speed=int(rng.integers(140, 210)),
                                     pitch=int(rng.integers(25, 75)))))


def _nonspeech(kind: str, rng: np.random.Generator) -> np.ndarray:
    makers = {
        "click": lambda: _click(rng),
        "cough": lambda: _cough(rng),
        "door": lambda: _door(rng),
        "tone": lambda: _pure_tone(rng),
        "ringing": lambda: _ringing(rng),
        "alarm": lambda: _alarm(rng),
        "chime": lambda: _chime(rng),
        "music": lambda: _music(rng),
        "moh": lambda: _moh(rng),
        "babble": lambda: _babble(("The meeting moved to the third floor",
                                   "She bought apples and pears",
                                   "We should leave before the traffic",
                                   "The train was late again"),
                                  ["en-us", "en+f3", "en+m3", "en-gb"], rng, 3 * SAMPLE_RATE),
    }
    return _unit(makers[kind]())


def _voices(split: str) -> list[str]:
    cfg = _SPLITS[split]
    voices = list(cfg["espeak"]) + (["agent"] if split == "dev" else [])
    voices += [f"rec:{r}" for r in cfg["recorded"]]
    if cfg["piper"]:
        voices.append("piper")
    return voices


def _speech(voice: str, text: str, rng: np.random.Generator) -> np.ndarray:
    return _unit(_caller_speech(voice, text, rng))


def make_flow(split: str, kind: str, line: str, *, voice: str = "", level_db: float = 0.0,
              offset_s: float = 0.5, later: bool = False, word: str = "", text: str = "",
              seed: int = 0) -> CallFlow:
    """One flow. `kind` "speech" says `text` (default: one of BARGE_TEXTS) in `voice`;
    "backchannel" says `word` (espeak voices; recorded ones take a RECORDED_BACKCHANNELS
    file); a NONSPEECH kind makes that sound; "echo" makes none. The caller's turns are in
    `voice` (the agent's voice for non-speech and echo flows)."""
    if line not in LINES:
        raise ValueError(f"unknown line {line!r}")
    rng = np.random.default_rng(seed)
    turn_voice = voice or "agent"
    n_turns = 2 if later else 1
    turns = tuple(_speech(turn_voice, TURN_TEXTS[int(rng.integers(len(TURN_TEXTS)))], rng)
                  for _ in range(n_turns))
    sound: np.ndarray | None
    sound_db = level_db
    if kind == "speech":
        sound = _speech(voice, text or BARGE_TEXTS[int(rng.integers(len(BARGE_TEXTS)))], rng)
    elif kind == "backchannel":
        sound = (_recorded_word(voice[4:], word) if voice.startswith("rec:")
                 else _espeak_word(word, voice, rng))
    elif kind == "echo":
        sound, sound_db = None, 0.0
    elif kind in NONSPEECH:
        sound, sound_db = _nonspeech(kind, rng), NONSPEECH_DB[kind]
    else:
        raise ValueError(f"unknown kind {kind!r}")
    what = word.replace(" ", "_").replace("/", "_") if kind == "backchannel" else kind
    name = (f"{what}-{voice or '-'}-{line}-{sound_db:+.0f}dB-{offset_s}s"
            f"{'-later' if later else ''}")
    return CallFlow(name, split, kind, voice, line, level_db, offset_s, later, turns, sound,
                    sound_db, seed, word)


def build_call_flows(split: str = "dev") -> list[CallFlow]:
    """The split's flows: real barge-ins (every voice on every line into the first reply,
    and on two lines into a later reply; levels and offsets cycled), backchannels (espeak
    words on every line, recorded words), non-speech kinds on every line, and echo alone
    on the echo lines (first and later replies)."""
    cfg = _SPLITS[split]
    base = int(cfg["seed"]) * 1000
    voices = _voices(split)
    lines = list(LINES)
    flows: list[CallFlow] = []
    i = 0
    for voice in voices:  # real barge-ins into the first reply
        for line in lines:
            flows.append(make_flow(split, "speech", line, voice=voice,
                                   level_db=LEVELS_DB[i % 3], offset_s=OFFSETS_S[(i // 3) % 6],
                                   seed=base + i))
            i += 1
    for k, voice in enumerate(voices):  # ... and into a later reply
        for line in (lines[k % len(lines)], lines[(k + 2) % len(lines)]):
            flows.append(make_flow(split, "speech", line, voice=voice,
                                   level_db=LEVELS_DB[i % 3], offset_s=OFFSETS_S[(i // 3) % 6],
                                   later=True, seed=base + i))
            i += 1
    espeak = list(cfg["espeak"])
    for w, word in enumerate(BACKCHANNELS):  # backchannels
        for line in lines:
            flows.append(make_flow(split, "backchannel", line, voice=espeak[i % len(espeak)],
                                   level_db=LEVELS_DB[i % 3], offset_s=OFFSETS_S[(i // 3) % 6],
                                   word=word, later=bool(w % 2 and line == "echo40"),
                                   seed=base + i))
            i += 1
    for r in cfg["recorded"]:
        for word in RECORDED_BACKCHANNELS:
            flows.append(make_flow(split, "backchannel", lines[i % len(lines)],
                                   voice=f"rec:{r}", level_db=LEVELS_DB[i % 3],
                                   offset_s=OFFSETS_S[(i // 3) % 6], word=word,
                                   seed=base + i))
            i += 1
    for kind in NONSPEECH:  # non-speech
        for line in lines:
            flows.append(make_flow(split, kind, line, offset_s=OFFSETS_S[(i // 3) % 6],
                                   later=bool(i % 4 == 0), seed=base + i))
            i += 1
    for line in ECHO_LINES:  # the agent's echo alone
        for later in (False, True):
            flows.append(make_flow(split, "echo", line, later=later, seed=base + i))
            i += 1
    return flows


def draw_flows(first: int, last: int, kinds: Iterable[str] = ("moh", "babble")
               ) -> list[CallFlow]:
    """Fresh draws outside dev and holdout: a flow of each kind per seed `first` .. `last`
    (inclusive), the line, the offset and first or later reply cycling with the seed. The
    splits hold a few flows of each non-speech kind; draws show how often a kind fools the
    gateway (seeds 100-139 were looked at while setting the confirmation, 200-239 not)."""
    lines = ["clean", "echo40", "echo120", "echo200", "phone"]
    return [make_flow("dev", kind, lines[seed % 5], offset_s=(0.25, 0.5, 1.0, 1.8)[seed % 4],
                      later=bool(seed % 2), seed=seed)
            for seed in range(first, last + 1) for kind in kinds]


def fresh_voice_flows(first: int, last: int) -> list[CallFlow]:
    """Fresh draws in holdout's voices: per seed `first` .. `last` (inclusive), a real
    barge-in (espeak set B, piper or a recorded voice) and an espeak backchannel, the line,
    level, offset and word cycling with the seed (a quarter of the barge-ins into a later
    reply). Session 15 first ran seeds 600-659, after its settings were chosen."""
    h = _SPLITS["holdout"]
    espeak = list(h["espeak"])
    voices = [*espeak, "piper", *(f"rec:{r}" for r in h["recorded"])]
    lines = list(LINES)
    flows = []
    for seed in range(first, last + 1):
        flows.append(make_flow("holdout", "speech", lines[seed % 5],
                               voice=voices[seed % len(voices)],
                               level_db=LEVELS_DB[(seed // 5) % 3],
                               offset_s=OFFSETS_S[(seed // 3) % 6], later=seed % 4 == 3,
                               seed=seed))
        flows.append(make_flow("holdout", "backchannel", lines[(seed + 2) % 5],
                               voice=espeak[seed % len(espeak)],
                               word=BACKCHANNELS[seed % len(BACKCHANNELS)],
                               level_db=LEVELS_DB[(seed // 2) % 3],
                               offset_s=OFFSETS_S[(seed // 5) % 6], seed=seed))
    return flows


# -- running ------------------------------------------------------------------------------

def _replay(flow: CallFlow, channel: np.ndarray, settings: CallSettings | None = None,
            wire: str | None = None) -> ReplayResult:
    echo_db, echo_ms, _ = LINES[flow.line]
    return asyncio.run(replay_async(channel, app=caller_first_demo,
                                    stt=ScriptedSTT(flow.answers), tts=agent_tts(),
                                    echo_db=echo_db, echo_ms=echo_ms, tail_ms=0,
                                    settings=settings or CallSettings(), wire=wire))


def _line(flow: CallFlow, x: np.ndarray) -> np.ndarray:
    return phone_channel(x) if LINES[flow.line][2] else x


def _floor(flow: CallFlow, total: int) -> np.ndarray:
    rng = np.random.default_rng(flow.seed + 17)
    return rng.standard_normal(total) * 32768.0 * 10 ** (FLOOR_DBFS / 20)


def _gain(level_db: float, cal: Calibration) -> float:
    return 32768.0 * 10 ** ((cal.agent_dbfs + level_db) / 20)


def _channel(flow: CallFlow, cal: Calibration, turns_at: list[float], total: int,
             sound_at: float | None = None) -> np.ndarray:
    """The caller's channel (floor, turns, the sound, through the line), float."""
    x = _floor(flow, total)
    for at, turn in zip(turns_at, flow.turns, strict=False):
        x += _place(total, turn * _gain(flow.level_db, cal), int(at * SAMPLE_RATE))
    if sound_at is not None and flow.sound is not None:
        x += _place(total, flow.sound * _gain(flow.sound_db, cal), int(sound_at * SAMPLE_RATE))
    return _line(flow, x)


def _replies(r: ReplayResult) -> list[int]:
    """The frames where the agent's talkspurts start."""
    p = r.played.astype(np.int8)
    return [int(k) for k in np.flatnonzero(np.diff(np.concatenate(([0], p))) == 1)]


def _turn_texts(r: ReplayResult) -> list[str]:
    return [e.get("text", "") for e in r.events if e["type"] == "turn.end"]


def _first_frame_after(r: ReplayResult, t_s: float) -> float | None:
    k = next((k for k in _replies(r) if k * FRAME_MS >= t_s * 1000), None)
    return None if k is None else k * FRAME_MS / 1000


def _story_heard(r: ReplayResult) -> dict[str, Any] | None:
    return next((e for e in r.events if e["type"] == "agent.heard"
                 and e.get("text", "").startswith(STORY[:16])), None)


def _audible_span(clean: np.ndarray, start: int) -> tuple[float | None, float | None]:
    """The first and last 10 ms windows of `clean[start:]` over its noise floor (10th
    percentile of its windows) by 20 dB, in ms from the start of `clean`."""
    n = 160
    x = _f(clean[start:])
    w = len(x) // n
    p = np.mean(x[: w * n].reshape(w, n) ** 2, axis=1)
    thr = max(float(np.percentile(p, 10)), 1.0) * 10 ** (ONSET_OVER_FLOOR_DB / 10)
    hit = np.flatnonzero(p > thr)
    if not len(hit):
        return None, None
    base = start * 1000.0 / SAMPLE_RATE
    return base + hit[0] * 10.0, base + (hit[-1] + 1) * 10.0


def calibrate() -> Calibration:
    """The agent's speech level and its story played whole, on a clean line."""
    flow = make_flow("dev", "echo", "clean", seed=1)
    turn = flow.turns[0]
    total = int((FIRST_TURN_AT_S + len(turn) / SAMPLE_RATE + REPLY_WAIT_S + 40.0) * SAMPLE_RATE)
    cal0 = Calibration(-20.0, 0, "")
    r = _replay(flow, _to_int16(_channel(flow, cal0, [FIRST_TURN_AT_S], total)))
    start = _replies(r)[0]
    heard = _story_heard(r)
    if heard is None:
        raise RuntimeError("calibration: the story did not play to its end")
    end = int(heard["t_ms"] // FRAME_MS)
    frames = int(r.played[start:end + 1].sum())
    agent = r.agent[start * FRAME_SAMPLES : (end + 1) * FRAME_SAMPLES]
    dbfs = 20 * np.log10(_active_rms(_f(agent)) / 32768.0)
    return Calibration(float(dbfs), frames, heard.get("text", ""))


def _locate(flow: CallFlow, cal: Calibration, total: int, wire: str | None = None
            ) -> tuple[list[float], float, np.ndarray] | str:
    """Pass 1: where the caller's turns go and when the reply under test starts (s), and
    the channel with the turns (float, `total` samples); or what went wrong."""
    turns_at = [FIRST_TURN_AT_S]
    if flow.later:  # reply 1 first: its end places turn 2
        end1 = FIRST_TURN_AT_S + len(flow.turns[0]) / SAMPLE_RATE + REPLY_WAIT_S + 3.0
        ch = _channel(flow, cal, turns_at, total)
        r = _replay(flow, _to_int16(ch[: int(end1 * SAMPLE_RATE)]), wire=wire)
        heard = [e for e in r.events if e["type"] == "agent.heard"]
        if _turn_texts(r) != ["hello"] or not heard:
            return f"reply 1 not as planned: turns {_turn_texts(r)}, heard {len(heard)}"
        start1 = _first_frame_after(r, FIRST_TURN_AT_S)
        if start1 is None or start1 < FIRST_TURN_AT_S + len(flow.turns[0]) / SAMPLE_RATE:
            return "the agent replied before the caller's first turn was over"
        turns_at.append(heard[0]["t_ms"] / 1000 + NEXT_TURN_GAP_S)
    ch = _channel(flow, cal, turns_at, total)
    last = turns_at[-1]
    end = last + len(flow.turns[-1]) / SAMPLE_RATE + REPLY_WAIT_S
    r = _replay(flow, _to_int16(ch[: int(end * SAMPLE_RATE)]), wire=wire)
    if _turn_texts(r) != list(flow.answers):
        return f"turns not as planned: {_turn_texts(r)}"
    start = _first_frame_after(r, last)
    if start is None:
        return "the reply did not start"
    said = last + len(flow.turns[-1]) / SAMPLE_RATE
    if start < said:
        return (f"the agent replied {1000 * (said - start):.0f} ms before the caller's turn "
                "was over (the turn detector ended it early)")
    return turns_at, start, ch


def score_events(out: Outcome, events: list[dict[str, Any]]) -> None:
    """The call's barge-in marks (timeline events, `t_ms` on the call's clock) into `out`."""
    for e in events:
        kind, t = e["type"], float(e["t_ms"])
        if kind == "bargein.pause":
            out.pauses.append(t)
        elif kind == "bargein.resume":
            out.resumes.append((t, float(e.get("paused_ms", 0.0))))
        elif kind == "bargein.confirm":
            out.confirms.append(t)
        elif kind == "interrupt":
            out.interrupts.append(t)
            out.interrupt_pauses.append(t - float(e.get("paused_ms", 0.0)))


def run_call_flow(flow: CallFlow, cal: Calibration, keep_channel: bool = False,
                  settings: CallSettings | None = None, wire: str | None = None) -> Outcome:
    """Both passes of one flow; what the call did over the reply (`keep_channel`: and pass
    2's caller channel, int16 at 16 kHz, without the line's echo). `settings` are the
    call's in pass 2 (pass 1 has no barge-in). `wire` ("pcmu"): the line is a phone call's,
    8 kHz G.711 both ways, the echo made at the far end from the decoded audio (as a
    Twilio or SIP call is; `replay_async`'s `wire`)."""
    out = Outcome(flow)
    turns_s = sum(len(t) for t in flow.turns) / SAMPLE_RATE
    reply_s = cal.story_frames * FRAME_MS / 1000
    total = int((FIRST_TURN_AT_S + turns_s + 2 * REPLY_WAIT_S + 6.0 + reply_s + TAIL_S + 3.0)
                * SAMPLE_RATE)
    located = _locate(flow, cal, total, wire)
    if isinstance(located, str):
        out.ok, out.problem = False, located
        return out
    turns_at, start_s, base = located
    out.reply_start_ms = start_s * 1000
    sound_at = start_s + flow.offset_s
    full = _channel(flow, cal, turns_at, total, sound_at)
    cut = int((sound_at - SPLICE_MS / 1000) * SAMPLE_RATE)
    ch = np.concatenate((base[:cut], full[cut:]))
    if flow.sound is not None:
        clean = _line(flow, _floor(flow, total)
                      + _place(total, flow.sound * _gain(flow.sound_db, cal),
                               int(sound_at * SAMPLE_RATE)))
        out.onset_ms, out.end_ms = _audible_span(clean, max(0, cut - SAMPLE_RATE))
    if flow.kind == "speech" and out.end_ms is not None:
        end_s = out.end_ms / 1000 + AFTER_SOUND_S
    else:
        end_s = start_s + reply_s + TAIL_S
    sent = _to_int16(ch[: int(end_s * SAMPLE_RATE)])
    r = _replay(flow, sent, settings, wire)
    out.events = r.events
    if keep_channel:
        out.channel = sent
    if _first_frame_after(r, turns_at[-1]) != start_s:
        out.ok, out.problem = False, "pass 2's reply started elsewhere"
        return out
    score_events(out, r.events)
    heard = _story_heard(r)
    if not any(t >= out.reply_start_ms for t in out.interrupts):
        end = int(heard["t_ms"] // FRAME_MS) if heard is not None else len(r.played) - 1
        k0 = int(out.reply_start_ms // FRAME_MS)
        out.full_played = (heard is not None and heard.get("text") == cal.story_heard
                           and int(r.played[k0 : end + 1].sum()) == cal.story_frames)
    return out
