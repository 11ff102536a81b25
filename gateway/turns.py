"""The per-turn record of a call (DESIGN rule 7): the one source of the conversation log
lines (`gateway.convlog`), the Prometheus metrics (`gateway.metrics`) and the OpenTelemetry
spans (`gateway.tracing`).

`Call` reports what happens (`CallTurns.caller_started`, `transcript`, `agent_event`,
`frame_out`, `paused`, ...) with times on the call's own clock (seconds since it started);
`CallTurns` keeps the turn in progress as a `Turn` and hands each finished turn to its
sinks. A turn is the caller's words and the agent's answer to them; the agent's greeting,
said before the caller spoke, is a turn with no caller part. A turn finishes when the agent
has finished answering (its audio played or cut), when the caller starts the next one, or
when the call ends.

With no sinks (a call outside an `AtomsApp`, or observability off) the record still
costs only a few attribute writes per event; per frame, `frame_out` is one flag test.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

log = logging.getLogger(__name__)

SEVERITIES = frozenset({"warning", "error", "fatal"})  # of agent.error, as metric labels
# Gaps of this many caller frames (20 ms) end a run of sound for the barge-in onset.
ONSET_GAP_FRAMES = 3


@dataclass(slots=True)
class Turn:
    """One turn of a call. Times are seconds on the call's clock (None: did not happen)."""

    index: int
    caller_started: float | None = None  # the caller's speech began (VAD, or a barge-in)
    caller_stopped: float | None = None  # the caller's last voiced frame
    turn_end: float | None = None  # the turn detector ended the caller's turn
    transcript_at: float | None = None  # the recogniser's final transcript came
    caller_text: str | None = None  # what the caller said (recognised or typed)
    caller_said_at: float | None = None  # the words reached the agent (system.llm.request)
    agent_text: str = ""  # what the agent meant to say (speak / LLM chunks)
    first_text_at: float | None = None  # the agent's first words (or audio) came
    tts_asked_at: float | None = None  # its first sentence went to the synthesiser
    llm_first_token_s: float | None = None  # OpenAIClient: request to first content chunk
    tts_ready_at: float | None = None  # the first synthesized audio of the answer was ready
    first_audio_out: float | None = None  # its first frame left the gateway
    heard_text: str = ""  # what the caller heard of the agent (cut at a barge-in)
    interrupted: bool = False  # the caller's barge-in was confirmed
    resumed: int = 0  # pauses that were not confirmed (backchannels, noises)
    pauses: list[float] = field(default_factory=list)  # barge-in latencies (s), onset to pause
    ended_at: float | None = None

    @property
    def reply_latency(self) -> float | None:
        """The caller's last voiced frame (or typed words) to the answer's first frame out."""
        if self.first_audio_out is None:
            return None
        start = self.caller_stopped if self.caller_stopped is not None else self.caller_said_at
        if start is None or self.first_audio_out < start:
            return None
        return self.first_audio_out - start

    @property
    def stt_latency(self) -> float | None:
        """End of the caller's turn to the recogniser's final transcript."""
        if self.turn_end is None or self.transcript_at is None:
            return None
        return max(0.0, self.transcript_at - self.turn_end)

    @property
    def tts_first_audio(self) -> float | None:
        """The agent's first sentence handed to the synthesiser (for streamed LLM text, once
        a sentence is complete) to its first synthesized audio."""
        start = self.tts_asked_at if self.tts_asked_at is not None else self.first_text_at
        if start is None or self.tts_ready_at is None:
            return None
        return max(0.0, self.tts_ready_at - start)


class TurnSink(Protocol):
    """Where finished turns go (metrics, conversation log, traces)."""

    def call_started(self, call: CallTurns) -> None: ...

    def turn_done(self, call: CallTurns, turn: Turn) -> None: ...

    def call_ended(self, call: CallTurns, outcome: str) -> None: ...

    def agent_error(self, call: CallTurns, severity: str) -> None: ...


# An end reason that means the call failed (anything else ended as a call normally does).
_FAILED = ("error", "failed", "unreachable", "refused", "voice loop", "timeout", "timed out")


def outcome(reason: str, transferred: bool) -> str:
    """completed, failed or transferred: how a call that was answered ended."""
    if transferred:
        return "transferred"
    text = reason.lower()
    return "failed" if any(word in text for word in _FAILED) else "completed"


class CallTurns:
    """A call's turns as they happen; finished turns go to `sinks`."""

    __slots__ = ("call_id", "gateway_id", "transport", "sinks", "turns", "current",
                 "awaiting_reply", "transferred", "ended", "wall0", "_index", "_response_open",
                 "_onset", "_gap", "_pause_t", "frames_dropped", "_before")

    def __init__(self, call_id: str, transport: str = "unknown") -> None:
        self.call_id = call_id
        self.gateway_id = call_id
        self.transport = transport
        self.sinks: list[TurnSink] = []
        self.turns = 0  # finished turns
        self.current: Turn | None = None
        self.awaiting_reply = False  # read every frame: a plain attribute
        self.transferred = False
        self.ended = False
        self.wall0 = time.time()  # the call's time 0 on the wall clock (for spans)
        self._index = 0
        self._response_open = False
        self._onset: float | None = None  # the barge-in detector's run of sound began
        self._gap = 0
        self._pause_t: float | None = None
        self._before: str | None = None  # the utterance playing when the caller's words came
        self.frames_dropped: dict[str, int] = {}  # set by the app at the call's end

    # -- lifecycle --------------------------------------------------------------------
    def started(self, t: float = 0.0) -> None:
        self.wall0 = time.time() - t
        for sink in self.sinks:
            _safe(sink.call_started, self)

    def call_ended(self, t: float, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._finish(t)
        kind = outcome(reason, self.transferred)
        for sink in self.sinks:
            _safe(sink.call_ended, self, kind)

    # -- the caller -------------------------------------------------------------------
    def _turn(self) -> Turn:
        turn = self.current
        if turn is None:
            turn = self.current = Turn(self._index)
            self._index += 1
        return turn

    def caller_started(self, t: float) -> None:
        """The caller's speech began: a new turn, unless this one has no words yet (a
        pause inside what the caller is saying)."""
        turn = self.current
        if turn is not None and (turn.caller_text is not None or turn.agent_text
                                 or turn.first_text_at is not None):
            self._finish(t)
            turn = None
        turn = self._turn()
        if turn.caller_started is None:
            turn.caller_started = t

    def caller_stopped(self, t: float) -> None:
        """The caller's last voiced frame was at `t`."""
        self._turn().caller_stopped = t

    def turn_ended(self, t: float) -> None:
        self._turn().turn_end = t

    def transcript(self, t: float) -> None:
        self._turn().transcript_at = t

    def caller_said(self, text: str, t: float, playing: str | None = None) -> None:
        """The caller's words reach the agent (recognised, or typed on /ws); `playing`: the
        utterance the agent was playing (or last played) then, which is not the answer."""
        self._before = playing
        turn = self.current
        if turn is not None and (turn.caller_text is not None or turn.agent_text):
            self._finish(t)  # (typed turns come with no speech start)
        turn = self._turn()
        turn.caller_text = text if turn.caller_text is None else f"{turn.caller_text} {text}"
        turn.caller_said_at = t
        self.awaiting_reply = True

    # -- the agent ----------------------------------------------------------------------
    def agent_event(self, etype: str, event: Any, t: float) -> None:
        """An event that reached the session's Sink."""
        if etype == "agent.llm.response.chunk" or etype == "agent.speak":
            text = getattr(event, "text", "") or ""
            turn = self._turn()
            if turn.first_text_at is None:
                turn.first_text_at = t
            turn.agent_text += text if etype.endswith("chunk") else (
                (" " if turn.agent_text else "") + text)
            self.awaiting_reply = True
        elif etype == "agent.llm.response.start":
            self._response_open = True
            turn = self._turn()
            if turn.agent_text and not turn.agent_text.endswith(" "):
                turn.agent_text += " "
        elif etype == "agent.llm.response.end":
            self._response_open = False
        elif etype == "agent.audio":
            turn = self._turn()
            if turn.first_text_at is None:
                turn.first_text_at = t
            self.awaiting_reply = True
        elif etype == "agent.transfer_call":
            self.transferred = True
        elif etype == "agent.error":
            severity = str(getattr(event, "severity", None) or "").lower()
            if severity not in SEVERITIES:  # (an agent server's, any text: a bounded label)
                severity = "other"
            for sink in self.sinks:
                _safe(sink.agent_error, self, severity)

    def tts_asked(self, t: float) -> None:
        """A sentence of the agent's went to the synthesiser."""
        turn = self._turn()
        if turn.tts_asked_at is None:
            turn.tts_asked_at = t

    def llm_first_token(self, seconds: float) -> None:
        """An `OpenAIClient` stream of this call gave its first content after `seconds`."""
        turn = self._turn()
        if turn.llm_first_token_s is None:
            turn.llm_first_token_s = seconds

    def audio_ready(self, t: float) -> None:
        """Agent audio went into the playout buffer."""
        turn = self.current
        if turn is not None and turn.tts_ready_at is None and turn.first_text_at is not None:
            turn.tts_ready_at = t

    def frame_out(self, t: float, position: tuple[str, float] | None = None) -> None:
        """An agent frame left (of the utterance in `position`) while an answer is
        awaited: the answer's first frame, unless it is more of what played before."""
        if position is not None and position[0] == self._before:
            return
        self.awaiting_reply = False
        turn = self._turn()
        if turn.first_audio_out is None:
            turn.first_audio_out = t

    def heard(self, text: str, t: float, idle: bool, utterance: str | None = None) -> None:
        """The caller heard `text` of an utterance; `idle`: the agent has nothing more
        playing or queued, so its answer is over unless a response is still streaming."""
        turn = self.current
        if turn is None or (utterance is not None and utterance == self._before):
            return  # (what played on from before the caller's words: an earlier turn's)
        if text:
            turn.heard_text = f"{turn.heard_text} {text}" if turn.heard_text else text
        if idle and not self._response_open and (turn.agent_text or turn.first_audio_out):
            self._finish(t)

    # -- barge-in -----------------------------------------------------------------------
    def detector_frame(self, active: bool, t: float) -> None:
        """A caller frame (starting at `t`) while the agent plays: `active` when the
        barge-in detector's gate let it through. Tracks where a run of sound began."""
        if active:
            if self._onset is None:
                self._onset = t
            self._gap = 0
        elif self._onset is not None:
            self._gap += 1
            if self._gap > ONSET_GAP_FRAMES:
                self._onset = None

    def paused(self, t: float) -> None:
        """The agent's audio paused for the caller: the barge-in latency ends here."""
        onset = self._onset if self._onset is not None else t
        self._turn().pauses.append(max(0.0, t - onset))
        self._onset = None
        self._pause_t = t

    def interrupted(self, t: float) -> None:
        if self._pause_t is None:  # (interrupt at the detector's fire: no pause before)
            self.paused(t)
        self._pause_t = None
        self._turn().interrupted = True

    def resumed(self, t: float) -> None:
        self._pause_t = None
        self._turn().resumed += 1

    # -- finishing ------------------------------------------------------------------------
    def _finish(self, t: float) -> None:
        turn, self.current = self.current, None
        self.awaiting_reply = False
        self._response_open = False
        if turn is None or (turn.caller_text is None and not turn.agent_text
                            and turn.first_audio_out is None and not turn.pauses):
            return
        turn.ended_at = t
        self.turns += 1
        for sink in self.sinks:
            _safe(sink.turn_done, self, turn)


def _safe(fn: Any, *args: Any) -> None:
    """A sink that raises is logged; the call goes on (DESIGN rule 6)."""
    try:
        fn(*args)
    except Exception:
        log.exception("observability sink %s failed", getattr(fn, "__qualname__", fn))
