"""Call: the one voice loop that binds a transport, the speech stack and a session.

`Call` coordinates three parts that each own their state, and the call's lifecycle:
- `Listening` (`gateway.listening`): VAD, turn end, preroll, the recogniser's stream, the
  conversation each `system.llm.request` carries;
- `Speaking` (`gateway.speaking`): sentences, speech, agent audio, the paced playout, the
  agent's hang-up or transfer once its audio has played;
- `BargeIn` (`gateway.barge_in`): the far-end clock, the detector, and the pause that a
  caller talking over the agent starts and that ends confirmed (Call interrupts the agent)
  or resumed.

Inbound, the transport's media tick hands 16 kHz 20 ms frames to `caller_frame`: while the
agent talks `BargeIn` judges them, else `Listening` does. Outbound, what reaches the
session's Sink is matched on its event class and goes to `Speaking`; every 20 ms the media
tick calls `play_tick`, which sends one frame of playout to the transport. Each turn is
recorded in `turns` (`gateway.turns`).

The session is seen only through `deliver`, `set_output` and `close`, so a local
`AgentSession` and a remote agent server are interchangeable.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from agent.clients.observe import first_token_observer
from agent.events import (
    SDKAgentAudioEvent,
    SDKAgentControlInterruptEvent,
    SDKAgentControlMuteUserEvent,
    SDKAgentControlUnmuteUserEvent,
    SDKAgentEndCallEvent,
    SDKAgentLLMResponseChunkEvent,
    SDKAgentLLMResponseEndEvent,
    SDKAgentLLMResponseStartEvent,
    SDKAgentSendDtmfEvent,
    SDKAgentSpeakEvent,
    SDKAgentTranscriptUpdateEvent,
    SDKAgentTransferConversationEvent,
    SDKEvent,
    SDKSystemControlInterruptEvent,
    SDKSystemDtmfEvent,
    SDKSystemInitEvent,
    SDKSystemLLMRequestEvent,
    SDKSystemUpdateOutputAgentSettingsEvent,
    SDKSystemUserJoinedEvent,
)
from gateway.barge_in import BargeIn, Pause, paused_ms
from gateway.listening import BARGE_IN_PREROLL_FRAMES, Listening
from gateway.speaker import Speaker
from gateway.speaking import Speaking
from gateway.turns import CallTurns
from media.bargein import BargeInConfig
from media.frames import FRAME_MS, FRAME_S
from media.playout import PlayoutBuffer
from media.recording import CallRecorder
from media.stt import SttEngine
from media.tts import TtsEngine
from media.vad import VadConfig
from runtime.clock import Clock, RealClock

log = logging.getLogger(__name__)

# Words a caller says over the agent without taking the turn ("uh-huh", "yeah", "okay",
# "mm-hmm", "right", "I see", "got it"): a recogniser's text made only of these does not
# confirm a barge-in. "no", "stop", "wait" are not here: they interrupt.
BACKCHANNEL_WORDS = frozenset(
    "uh huh uhhuh uhuh mm mmm hmm mhm mhmm hm um ah aha oh ooh okay ok kay yeah yea yes yep "
    "yup ya right alright all sure i see got it gotcha cool great good nice wow really "
    "exactly true indeed totally fine".split())


class Transport(Protocol):
    """What the loop needs from a transport. Audio is 16 kHz int16, 20 ms frames.

    The loop has no clock of its own: the media tick its transport belongs to
    (`gateway.media_tick`) calls `Call.play_tick()` every 20 ms and `Call.caller_frame()`
    for each caller frame. A transport may also be `SendsDtmf` and `PlaysNow`."""

    async def send_audio(self, frame: np.ndarray) -> None: ...

    async def clear_audio(self) -> None: ...

    async def hangup(self) -> None: ...

    async def transfer(self, target: str) -> None: ...

    async def send_event(self, event: SDKEvent) -> None: ...


@runtime_checkable
class SendsDtmf(Protocol):
    """A transport that sends key presses out of band (SIP: RFC 4733): True when it did;
    otherwise the loop plays them as tones."""

    async def send_dtmf(self, digits: str) -> bool: ...


@runtime_checkable
class PlaysNow(Protocol):
    """A transport whose media tick can play a talkspurt's first frame at once rather
    than at its next tick."""

    def play_now(self) -> None: ...


class SessionLike(Protocol):
    async def deliver(self, event: SDKEvent) -> None: ...

    def set_output(self, fn: Any) -> None: ...

    async def close(self, reason: str = ...) -> None: ...


@dataclass
class CallSettings:
    """Per-call voice settings (defaults are the measured ones of each module)."""

    vad: VadConfig = field(default_factory=VadConfig)
    bargein: BargeInConfig = field(default_factory=BargeInConfig)
    end_of_turn_ms: int | None = None  # None: media.turn's measured default
    interruptible: bool = True
    record: bool = False
    far_end_confirms: bool = False  # the transport reports what the far end played (marks)
    max_agent_audio_s: float = 60.0  # agent.audio queued to play at most; more is dropped
    max_duration_s: float | None = None  # the call's maximum duration: bounds its recording
    # Barge-in, pause first (README "Barge-in"): the detector's fire pauses the agent's
    # audio; the caller's speech confirms an interruption when it goes on for
    # `bargein_confirm_ms` from the pause (0: interrupt at the fire, no pause) or, with
    # `bargein_words`, when the recogniser hears a word outside `backchannel_words`;
    # `bargein_resume_ms` of quiet before that resumes the agent where it paused.
    bargein_confirm_ms: int = 720
    bargein_resume_ms: int = 200
    bargein_words: bool | None = None  # None: if the recogniser's stream has `interim_words`
    backchannel_words: frozenset[str] = BACKCHANNEL_WORDS

    def __post_init__(self) -> None:
        if self.bargein_confirm_ms < 0 or self.bargein_resume_ms < FRAME_MS:
            raise ValueError("need bargein_confirm_ms >= 0 and bargein_resume_ms >= 20")


class Call:
    """One call's voice loop."""

    _ids = itertools.count(1)

    def __init__(
        self,
        transport: Transport,
        session: SessionLike,
        stt: SttEngine,
        tts: TtsEngine,
        init_event: SDKSystemInitEvent | None = None,
        settings: CallSettings | None = None,
        clock: Clock | None = None,
        call_id: str | None = None,
    ) -> None:
        self.call_id = call_id or f"call-{next(self._ids)}"  # the caller's id: data only
        self.gateway_id = self.call_id  # the registry's key: AtomsApp sets its own unique id
        self.transport = transport
        self.session = session
        self.settings = settings or CallSettings()
        self.clock = clock or RealClock()
        self.init_event = init_event or SDKSystemInitEvent()
        self.interruptible = self.settings.interruptible
        if self.init_event.output_agent_settings is not None:
            self.interruptible = self.init_event.output_agent_settings.interruptible
        self.recorder = (CallRecorder(max_seconds=self.settings.max_duration_s)
                         if self.settings.record else None)
        self.timeline: list[dict[str, Any]] = []

        # The parts see the call through a weak proxy: an ended call is freed by reference
        # counting, not left for the cyclic collector (tests/gateway/test_call_teardown.py).
        me = weakref.proxy(self)
        self.listening = Listening(me, self.settings, stt)
        self.speaking = Speaking(me, self.settings, tts, on_audio=self._wake_ticker)
        words = self.settings.bargein_words
        self.barge_in = BargeIn(me, self.settings, self.speaking.playout, self.listening,
                                self.listening.interim_words if words is None else words)
        self.muted = False
        self._dry = True  # playout ran dry and `_drained` has seen it
        self.closed = False  # (read every frame: a plain attribute, not the event)
        self._closed = asyncio.Event()
        self._t0 = self.clock.now()
        self.interrupts: list[float] = []  # when the agent paused, for confirmed barge-ins
        self._hanging_up = False  # the agent's hang-up is under way (the call's end reason)
        self.end_reason: str | None = None  # why the call ended, once it has
        self.turns = CallTurns(self.call_id)  # the per-turn record (`gateway.turns`)

    # -- lifecycle ---------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the session's output and announce the caller: init, then joined."""
        self._t0 = self.clock.now()
        self.turns.started()
        self.session.set_output(self._on_agent_event)
        await self.deliver(self.init_event)
        await self.deliver(SDKSystemUserJoinedEvent())

    async def close(self, reason: str = "hangup") -> None:
        """The call is over (caller hung up, or we did): stop everything, close the session."""
        if self.closed:
            return
        if self._hanging_up:  # (the transport saw its own hang-up close the line first)
            reason = "agent hung up"
        self.end_reason = reason
        self.closed = True
        self._closed.set()
        self.mark("call.end", reason=reason)
        self.turns.call_ended(self.elapsed(), reason)
        await self.speaking.close()
        await self.listening.close()
        try:
            await self.session.close(reason)
        except Exception:
            log.exception("call %s: closing the session failed", self.call_id)
        # The session no longer calls back into the loop. Without this reference cycle the
        # call's buffers are freed as soon as its transport lets go of it, not by the next
        # full garbage collection (a pause for every call, measured 25-108 ms at 300-400).
        self.session.set_output(None)

    async def wait_closed(self) -> None:
        await self._closed.wait()

    def now(self) -> float:
        """The call's clock (seconds): when a transport received caller audio."""
        return self.clock.now()

    @property
    def playout(self) -> PlayoutBuffer:
        """The agent's paced audio (`gateway.speaking`)."""
        return self.speaking.playout

    @property
    def speaker(self) -> Speaker:
        """What turns the agent's words and audio into playout (`gateway.speaking`)."""
        return self.speaking.speaker

    # -- what a transport whose far end reports playback (marks) asks of the playout
    def play_position(self) -> tuple[str, float] | None:
        """What has been sent so far: (utterance, ms into it), for a mark; None if nothing."""
        return self.speaking.playout.position()

    def at_play_boundary(self) -> bool:
        """The frame just sent ended an utterance, or emptied the queue: mark it now."""
        playout = self.speaking.playout
        return playout.at_utterance_end or not playout.queued_ms

    def far_end_played(self, utterance_id: str, ms: float) -> None:
        """The far end reports it played `utterance_id` up to `ms`."""
        self.speaking.playout.confirm(utterance_id, ms)

    def elapsed(self) -> float:
        return self.clock.now() - self._t0

    # -- inbound -----------------------------------------------------------------------
    @property
    def agent_active(self) -> bool:
        """Agent audio is playing or queued to play."""
        return self.speaking.busy

    async def caller_frame(self, frame: np.ndarray, arrived: float | None = None) -> None:
        """One 20 ms frame of the caller's audio (16 kHz int16), which arrived at `arrived`
        on the call's clock (default: now; a shared media tick passes the arrival time)."""
        if self.closed:
            return
        at = self.clock.now() if arrived is None else arrived
        n = self.barge_in.caller_arrived(at)
        if self.recorder is not None:  # at its arrival, less the frame (`media.recording`)
            self.recorder.caller(frame, max(0.0, at - self._t0 - FRAME_S),
                                 self.clock.now() - self._t0)
        if self.muted:
            return
        if self.barge_in.pause is not None and not (self.agent_active and self.interruptible):
            self.barge_in.resume("agent done")  # (flushed, or it became uninterruptible)
        listening = self.listening
        if self.agent_active and not listening.user_speaking:
            if not self.interruptible:
                listening.overhear(frame)
                return
            # The barge-in detector decides. The VAD sits this out: it would hear the
            # agent's echo as speech, and it runs again once the agent stops.
            fired = self.barge_in.detect(frame, n)
            # (where the caller's sound began: the barge-in latency)
            self.turns.detector_frame(self.barge_in.hears_sound, at - self._t0 - FRAME_S)
            # what the frame decides happens when it was heard (the tick's time), however
            # long the work takes: the call's timeline is then the same live and in replay
            heard = self.clock.now() - self._t0
            if not self.barge_in.decide(frame, fired, heard):  # pause first ...
                return
            pause = self.barge_in.confirm(heard)
            await self._interrupt(pause, heard)  # ... interrupt when it is real
            if self.closed:  # the caller hung up meanwhile: the recogniser is gone
                return
            if pause.words:  # (the recogniser has had this frame)
                listening.track(frame)
                return
        await listening.caller_frame(frame)

    async def user_said(self, text: str) -> None:
        """A user turn in words (from STT, or typed by a web client)."""
        pos = self.speaking.playout.position()  # (what plays on now is not the answer)
        self.turns.caller_said(text, self.elapsed(), pos[0] if pos is not None else None)
        self.listening.remember("user", text)
        await self.deliver(SDKAgentTranscriptUpdateEvent(role="user", content=text))
        await self.deliver(SDKSystemLLMRequestEvent(
            messages=list(self.listening.conversation)))

    async def dtmf(self, digit: str) -> None:
        await self.deliver(SDKSystemDtmfEvent(digit=digit))

    # -- barge-in: interrupt when it is real (`gateway.barge_in` pauses first) ------------
    async def _interrupt(self, pause: Pause, at: float) -> None:
        """The caller talks over the agent, confirmed by the frame heard at `at` (elapsed
        seconds): silence the agent first (no await in between, so no frame can slip out),
        then clear the far end, interrupt the session, and tell it what the caller heard."""
        self.mark("interrupt", at=at, paused_ms=paused_ms(pause.t, at))
        self.interrupts.append(pause.t)
        self.turns.interrupted(pause.t)
        heard = self._silence()
        try:
            await self.transport.clear_audio()
        except Exception:
            log.exception("call %s: transport could not clear audio", self.call_id)
        await self.deliver(SDKSystemControlInterruptEvent())
        await self.speaking.speaker.cancel()
        for item in heard:
            await self._heard(item.utterance_id, item.text)
        if self.closed:  # (a hang-up may have come in during the awaits above)
            return
        if pause.words:  # the recogniser has heard it all already
            await self.listening.user_started(0)
        else:
            await self.listening.user_started(BARGE_IN_PREROLL_FRAMES + pause.held)

    async def _stop_output(self) -> None:
        """Drop all agent audio now (the agent asked); tell it what the caller heard."""
        heard = self._silence()
        await self.speaking.speaker.cancel()
        for item in heard:
            await self._heard(item.utterance_id, item.text)

    def _silence(self) -> list[Any]:
        """Flush playout and forget the response being spoken; returns what was heard."""
        heard = self.speaking.silence()
        self.barge_in.drop()  # (a flush ends a pause)
        return heard

    async def _heard(self, utterance_id: str, text: str) -> None:
        self.mark("agent.heard", utterance=utterance_id, text=text)
        self.turns.heard(text, self.elapsed(), not self.agent_active, utterance_id)
        if text:
            self.listening.remember("assistant", text)
        await self.deliver(SDKAgentTranscriptUpdateEvent(role="assistant", content=text))

    # -- outbound ----------------------------------------------------------------------
    async def say_and_hang_up(self, text: str) -> None:
        """The gateway itself ends the call (a transfer failed): `text`, then hang up once
        it has played, on the same path as an agent's `agent.speak` + `agent.end_call`."""
        await self._on_agent_event(SDKAgentSpeakEvent(text=text))
        await self._on_agent_event(SDKAgentEndCallEvent())

    async def _on_agent_event(self, event: SDKEvent) -> None:
        """Everything that reaches the session's Sink."""
        if self.closed:
            return
        etype = event.type
        if etype == "agent.transcript.update":
            return  # our own transcripts coming back through the graph: already shown
        self.turns.agent_event(etype, event, self.elapsed())
        if etype.startswith("agent."):
            self.mark(etype, **_brief(event))
            await self._show(event)
            if etype != "agent.audio":
                self.speaking.close_audio()
        match event:
            case SDKAgentSpeakEvent():
                self.speaking.say(event.text)
            case SDKAgentLLMResponseStartEvent():
                self.speaking.response_started()
            case SDKAgentLLMResponseChunkEvent():
                self.speaking.response_chunk(event.text)
            case SDKAgentLLMResponseEndEvent():
                self.speaking.response_ended()
            case SDKAgentAudioEvent():
                self.speaking.agent_audio(event)
            case SDKAgentControlInterruptEvent():
                await self._stop_output()
                await self.transport.clear_audio()
            case SDKAgentSendDtmfEvent():
                await self._send_dtmf(event.digits)
            case SDKAgentControlMuteUserEvent():
                self.muted = True
            case SDKAgentControlUnmuteUserEvent():
                self.muted = False
            case SDKAgentEndCallEvent():
                self.speaking.after_drain("hangup")
                self._wake_ticker()
            case SDKAgentTransferConversationEvent():
                self.speaking.after_drain("transfer", event.transfer_call_number)
                self._wake_ticker()
            case SDKSystemUpdateOutputAgentSettingsEvent():
                if "interruptible" in event.settings:
                    self.interruptible = bool(event.settings["interruptible"])

    async def _send_dtmf(self, digits: str) -> None:
        """Key presses for the far end: out of band if the transport can, else as tones
        after the audio already queued (an utterance with no words, like `agent.audio`,
        so it is cut by barge-in like speech)."""
        try:
            if isinstance(self.transport, SendsDtmf) and await self.transport.send_dtmf(digits):
                return
        except Exception:
            log.exception("call %s: transport could not send DTMF; playing tones", self.call_id)
        self.speaking.play_tones(digits)

    def _wake_ticker(self) -> None:
        """Agent audio was queued: after a dry spell, the transport's media tick plays the
        talkspurt's first frame at once, not at its next tick (up to 20 ms later)."""
        playing = self.speaking.playout.is_playing
        if self.turns.awaiting_reply and playing:
            self.turns.audio_ready(self.elapsed())
        if self._dry and playing and isinstance(self.transport, PlaysNow):
            self.transport.play_now()

    async def play_tick(self) -> None:
        """One 20 ms tick of playout: a frame if there is one, and once playout runs dry, a
        pending hang-up or transfer. Called every 20 ms by the media tick the call's
        transport belongs to (`gateway.media_tick`)."""
        playout = self.speaking.playout
        if playout.is_playing or not self._dry:
            # (one more tick once the queue empties: a far-end confirmation that emptied it
            # between ticks is reported by output_tick)
            self._dry = False
            await self.output_tick()
            if playout.is_playing:
                return
        if not self._dry or self.speaking.actions_pending:
            self._dry = True
            await self._drained()

    async def output_tick(self) -> None:
        """Play one frame, if there is one, and report utterances that finished."""
        self.barge_in.resume_if_overdue()
        frame = self.speaking.next_frame()
        if frame is not None:
            self.barge_in.agent_frame(frame, self.clock.now())
            if self.recorder is not None:
                self.recorder.agent(frame, self.elapsed())
            try:
                await self.transport.send_audio(frame)
            except Exception:
                log.exception("call %s: transport could not send audio", self.call_id)
            if self.turns.awaiting_reply:
                self.turns.frame_out(self.elapsed(), self.speaking.playout.position())
        for utterance_id, text in self.speaking.finished():
            await self._heard(utterance_id, text)

    async def _drained(self) -> None:
        """Playout is empty: the detector starts afresh, and a pending hang-up or transfer
        runs once speech is done too."""
        if not self.speaking.playout.is_playing:
            self.barge_in.agent_quiet()
        self.speaking.run_due_action()

    async def hang_up(self) -> None:
        """The agent's hang-up, once its audio has played: the line, then the call."""
        self._hanging_up = True
        try:
            await self.transport.hangup()
        finally:
            await self.close("agent hung up")

    async def transfer(self, target: str) -> None:
        """The agent's transfer, once its audio has played (a failure is logged)."""
        try:
            await self.transport.transfer(target)
        except Exception:
            log.exception("call %s: transfer to %s failed", self.call_id, target)

    # -- helpers -----------------------------------------------------------------------
    async def _show(self, event: SDKEvent) -> None:
        """Let the transport show an event to the caller (web clients render transcripts)."""
        try:
            await self.transport.send_event(event)
        except Exception:
            log.exception("call %s: transport could not take %s", self.call_id, event.type)

    async def deliver(self, event: SDKEvent) -> None:
        self.mark(event.type, **_brief(event))
        if event.type != "system.init":
            await self._show(event)
        # (tasks the session starts meanwhile report their LLM's first token to this call)
        token = first_token_observer.set(self.turns.llm_first_token)
        try:
            await self.session.deliver(event)
        except Exception:
            log.exception("call %s: delivering %s failed", self.call_id, event.type)
        finally:
            first_token_observer.reset(token)

    def mark(self, kind: str, at: float | None = None, **fields: Any) -> None:
        t = self.elapsed() if at is None else at
        self.timeline.append({"t_ms": round(t * 1000, 1), "type": kind, **fields})
        if self.recorder is not None:
            self.recorder.event(t, kind, **fields)


_BRIEF = ("text", "content", "role", "digit", "digits", "reason", "transfer_call_number",
          "message")


def _brief(event: SDKEvent) -> dict[str, Any]:
    """The fields of an event worth a timeline entry (no audio, no long lists). Read from the
    model's fields (and extras) directly: `getattr` on a name a pydantic model lacks goes
    through its slow `__getattr__` (about 7 µs a miss, most of the keys of most events)."""
    fields = getattr(event, "__dict__", None)
    if fields is None:  # not a pydantic model after all
        fields = {key: getattr(event, key, None) for key in _BRIEF}
    extra = getattr(event, "__pydantic_extra__", None) or {}
    out: dict[str, Any] = {}
    for key in _BRIEF:
        value = fields.get(key, extra.get(key))
        if value is not None:
            out[key] = value
    return out
