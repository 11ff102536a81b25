"""A test kit for interrupt handling: replay caller turns or a WAV through your agent and
check what happened.

    from gateway.replay_kit import CallerTurn, replay_turns

    check = replay_turns([CallerTurn(1.0, say="tell me a story"),
                          CallerTurn(9.0, say="wait, stop, I have a question")],
                         app=setup)
    check.assert_interrupted()                  # at least one barge-in confirmed
    check.assert_said("Once upon a time")       # the agent meant to say it ...
    check.assert_heard("Once upon a time")      # ... and the caller heard (part of) it

The pytest plugin (`gateway.pytest_plugin`, the `atoms_replay` fixture) wraps the same.

Caller turns are spoken by the gateway's own offline synthesisers (espeak-ng by default,
piper's `en_US-joe-medium` with `tts="piper"`) or taken from WAV files, each placed at its
time (seconds from the start of the call) on one caller track, which `gateway.testing`
replays through the real voice loop under a virtual clock: deterministic, and far faster
than real time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gateway.testing import ReplayResult, load_wav, replay_async, require_no_loop
from media.frames import SAMPLE_RATE

__all__ = ["CallerTurn", "ReplayCheck", "caller_track", "replay_turns", "replay_turns_async"]

TAIL_S = 3.0  # silence after the last caller turn, for the agent's answer to it


@dataclass(frozen=True)
class CallerTurn:
    """What the caller says, and when (seconds from the call's start): `say` (text, spoken
    by the synthesiser) or `wav` (a mono or stereo 16-bit WAV; its left channel)."""

    at: float
    say: str | None = None
    wav: str | Path | None = None

    def __post_init__(self) -> None:
        if (self.say is None) == (self.wav is None):
            raise ValueError("a CallerTurn needs exactly one of say= or wav=")
        if self.at < 0:
            raise ValueError(f"a CallerTurn's time must be >= 0, got {self.at}")


TurnLike = CallerTurn | tuple[float, str]


def _as_turn(item: TurnLike) -> CallerTurn:
    if isinstance(item, CallerTurn):
        return item
    at, what = item
    if str(what).lower().endswith(".wav"):
        return CallerTurn(float(at), wav=what)
    return CallerTurn(float(at), say=str(what))


def _engine(tts: Any, voice: str | None) -> Any:
    if not isinstance(tts, str):
        return tts  # an engine object (`media.tts.TtsEngine`)
    kind = tts.strip().lower()
    if kind == "espeak":
        from media.tts.espeak import EspeakTTS

        engine: Any = EspeakTTS(voice=voice or "en-us")
    elif kind == "piper":
        from media.tts.piper import PiperTTS

        engine = PiperTTS(voice=voice)
    else:
        raise ValueError(f"tts={tts!r}: use 'espeak', 'piper' or a TTS engine object")
    engine.check()
    return engine


_LEAD_LEVEL = 100  # |sample| under this (-50 dBFS) before a synthesiser's first sound


def _lead_trimmed(pcm: np.ndarray) -> np.ndarray:
    """Synthesised speech without the silence a synthesiser puts before it (piper's varies
    from run to run), so that a turn's speech starts at its time."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) >= _LEAD_LEVEL)
    return pcm[int(loud[0]):] if len(loud) else pcm


async def caller_track(turns: Iterable[TurnLike], tts: Any = "espeak",
                       voice: str | None = None, duration: float | None = None
                       ) -> np.ndarray:
    """The caller's channel (16 kHz int16): each turn's speech from its time on (synthesised
    speech from its first sound; a WAV as it is), silence between, and `TAIL_S` after the last (or up to `duration` seconds)."""
    from media.tts import synthesize_all

    items = sorted((_as_turn(t) for t in turns), key=lambda t: t.at)
    if not items:
        raise ValueError("no caller turns given")
    engine = None
    pieces: list[tuple[int, np.ndarray]] = []
    for turn in items:
        if turn.say is not None:
            if engine is None:
                engine = _engine(tts, voice)
            pcm = _lead_trimmed(await synthesize_all(engine, turn.say))
        else:
            pcm, _ = load_wav(turn.wav)  # type: ignore[arg-type]
        pieces.append((int(round(turn.at * SAMPLE_RATE)), pcm))
    if engine is not None and hasattr(engine, "aclose") and isinstance(tts, str):
        await engine.aclose()
    end = max(s + len(p) for s, p in pieces) + int(TAIL_S * SAMPLE_RATE)
    if duration is not None:
        end = int(round(duration * SAMPLE_RATE))
    track = np.zeros(end, dtype=np.int32)
    for s, pcm in pieces:
        n = max(0, min(len(pcm), end - s))
        track[s : s + n] += pcm[:n]
    return np.clip(track, -32768, 32767).astype(np.int16)


class ReplayCheck:
    """A replayed call's result (`result`: `gateway.testing.ReplayResult`) with the
    questions a test asks of it, and assertions that print the call's timeline on failure."""

    def __init__(self, result: ReplayResult) -> None:
        self.result = result

    # -- what happened ------------------------------------------------------------------
    @property
    def interrupts(self) -> list[dict[str, float]]:
        """Confirmed barge-ins: `at_ms` (the agent's audio paused), `speech_onset_ms`,
        `latency_ms`."""
        return self.result.interrupts

    @property
    def agent_said(self) -> list[str]:
        """What the agent meant to say, one entry per `agent.speak` or streamed response."""
        said: list[str] = []
        parts: list[str] | None = None
        for ev in self.result.events:
            kind = ev["type"]
            if kind == "agent.speak":
                said.append(str(ev.get("text", "")))
            elif kind == "agent.llm.response.start":
                parts = []
            elif kind == "agent.llm.response.chunk":
                if parts is None:
                    parts = []
                parts.append(str(ev.get("text", "")))
            elif kind == "agent.llm.response.end" and parts is not None:
                said.append("".join(parts))
                parts = None
        if parts:
            said.append("".join(parts))
        return said

    @property
    def caller_heard(self) -> list[str]:
        """What the caller heard of each utterance, cut where a barge-in stopped it."""
        return [str(ev.get("text", "")) for ev in self.result.events
                if ev["type"] == "agent.heard"]

    @property
    def caller_said(self) -> list[str]:
        """The caller's turns as the recogniser gave them (turns with no words left out)."""
        return [str(ev["text"]) for ev in self.result.events
                if ev["type"] == "turn.end" and ev.get("text")]

    def describe(self) -> str:
        return self.result.describe()

    def plot(self, path: str | Path) -> None:
        self.result.plot(str(path))

    # -- assertions ---------------------------------------------------------------------
    def _fail(self, message: str) -> None:
        raise AssertionError(f"{message}\n--- the replayed call ---\n{self.describe()}")

    def assert_interrupted(self, count: int | None = None, *, after_s: float | None = None,
                           before_s: float | None = None,
                           max_latency_ms: float | None = None) -> None:
        """At least one confirmed barge-in (exactly `count`, if given), in the window
        [after_s, before_s] when given, each within `max_latency_ms` of its speech onset."""
        found = [it for it in self.interrupts
                 if (after_s is None or it["at_ms"] >= after_s * 1000)
                 and (before_s is None or it["at_ms"] <= before_s * 1000)]
        if count is None and not found:
            self._fail("expected an interrupt, got none")
        if count is not None and len(found) != count:
            self._fail(f"expected {count} interrupt(s), got {len(found)}")
        if max_latency_ms is not None:
            slow = [it for it in found if it["latency_ms"] > max_latency_ms]
            if slow:
                self._fail(f"interrupt(s) slower than {max_latency_ms:g} ms: {slow}")

    def assert_not_interrupted(self) -> None:
        """No barge-in was confirmed (backchannels, noises and echo must not interrupt)."""
        if self.interrupts:
            self._fail(f"expected no interrupt, got {len(self.interrupts)}")

    def assert_said(self, text: str) -> None:
        """Some utterance of the agent holds `text` (case-insensitive)."""
        if not any(text.lower() in s.lower() for s in self.agent_said):
            self._fail(f"the agent never said {text!r}")

    def assert_not_said(self, text: str) -> None:
        if any(text.lower() in s.lower() for s in self.agent_said):
            self._fail(f"the agent said {text!r}")

    def assert_heard(self, text: str) -> None:
        """The caller heard `text` (case-insensitive) in some utterance."""
        if not any(text.lower() in s.lower() for s in self.caller_heard):
            self._fail(f"the caller never heard {text!r}")

    def assert_not_heard(self, text: str) -> None:
        """The caller did not hear `text`: e.g. the end of an utterance cut by a barge-in."""
        if any(text.lower() in s.lower() for s in self.caller_heard):
            self._fail(f"the caller heard {text!r}")


async def replay_turns_async(turns: Sequence[TurnLike] | str | Path | np.ndarray,
                             app: Any = None, *, tts: Any = "espeak",
                             voice: str | None = None, duration: float | None = None,
                             agent_tts: Any = None, **kwargs: Any) -> ReplayCheck:
    """Replay caller turns (or a WAV path, or a 16 kHz int16 array) through `app` (a setup
    handler; None: the demo agent) inside a running event loop. `tts` and `voice` speak
    the caller's text turns; `agent_tts` is the agent's synthesiser (default: as `serve`
    picks it). `kwargs` go to `gateway.testing.replay_async` (`stt`, `settings`,
    `echo_db`, ...)."""
    if isinstance(turns, (str, Path, np.ndarray)):
        audio: Any = turns
    else:
        audio = await caller_track(turns, tts=tts, voice=voice, duration=duration)
    return ReplayCheck(await replay_async(audio, app=app, tts=agent_tts, **kwargs))


def replay_turns(turns: Sequence[TurnLike] | str | Path | np.ndarray, app: Any = None,
                 **kwargs: Any) -> ReplayCheck:
    """`replay_turns_async` from synchronous code (a plain test function)."""
    require_no_loop("replay_turns", "replay_turns_async")
    return asyncio.run(replay_turns_async(turns, app, **kwargs))
