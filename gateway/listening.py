"""Listening: the caller's side of a call. VAD, turn end, preroll, recogniser, memory.

Per caller frame that is the caller's (not a barge-in's, which `gateway.barge_in` judges
first): the VAD says started/stopped speaking, the frames of the caller's speech go to the
recogniser (with a preroll from before the VAD noticed), and the turn detector ends the
turn; its transcript becomes the call's `user_said`. It also keeps the conversation that
each `system.llm.request` carries, bounded.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import numpy as np

from agent.events import SDKSystemUserStartedSpeakingEvent, SDKSystemUserStoppedSpeakingEvent
from media.frames import FRAME_MS, FRAME_S
from media.stt import AsyncEndOfTurn, SttEngine, SttStream, Transcript
from media.turn import TurnDetector
from media.vad import Vad
from runtime.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.call import CallSettings
    from gateway.call_owner import CallOwner

log = logging.getLogger(__name__)

# Audio from before speech was detected also goes to STT: 300 ms before a VAD start
# (which lags onset by ~60 ms), 500 ms before a barge-in (which lags it by 150-450 ms).
# Longer silence in front of a word measurably hurts the recogniser (a sipp call's
# "goodbye" became "hello" with 500 ms before a VAD start).
PREROLL_FRAMES = 15
BARGE_IN_PREROLL_FRAMES = 25
# The conversation each `system.llm.request` carries: the newest messages, at most this many
# and (beyond the newest one) this many characters in all. Without a bound every turn
# carried the whole call, so a long or hostile call cost quadratic time and memory.
CONVERSATION_MESSAGES = 200
CONVERSATION_CHARS = 32_000


class Listening:
    """One call's listening side (and, for `gateway.barge_in`, its `Ears`)."""

    def __init__(self, owner: CallOwner, settings: CallSettings, stt: SttEngine) -> None:
        self._owner = owner
        self._settings = settings
        self.vad = Vad(settings.vad)
        self.turn = (TurnDetector(settings.end_of_turn_ms)
                     if settings.end_of_turn_ms else TurnDetector())
        self.stt: SttStream = stt.new_stream()
        self.conversation: deque[dict[str, Any]] = deque()  # bounded: `remember`
        self._conversation_chars = 0
        self.user_speaking = False
        self._vad_confirmed = True  # the VAD started the caller's speech (not a barge-in alone)
        self._unvoiced_run = 0
        # (the frames of a pause go in too, for the recogniser once it is confirmed)
        self._preroll: deque[np.ndarray] = deque(
            maxlen=BARGE_IN_PREROLL_FRAMES + settings.bargein_confirm_ms // FRAME_MS + 1)
        self._turn_task: asyncio.Task[None] | None = None  # awaiting a network transcript

    @property
    def interim_words(self) -> bool:
        """The recogniser reports words while the caller is still speaking."""
        return bool(getattr(self.stt, "interim_words", False))

    async def close(self) -> None:
        """The call is over: no transcript is awaited any more, the recogniser closes."""
        await cancel_and_wait(self._turn_task)
        self.stt.close()

    # -- frames -----------------------------------------------------------------------
    def overhear(self, frame: np.ndarray) -> None:
        """A frame while the agent talks and may not be interrupted: the VAD starts the
        turn once the agent stops, and the frame waits in the preroll."""
        self.vad.process(frame)
        self.hold(frame)

    def track(self, frame: np.ndarray) -> None:
        """A frame the recogniser has had already (a confirmed barge-in's): the VAD only."""
        self.vad.process(frame)

    async def caller_frame(self, frame: np.ndarray) -> None:
        """One caller frame that is the caller's: VAD, recogniser, turn end."""
        owner = self._owner
        vad = self.vad.process(frame)
        if vad == "start" and not self.user_speaking:
            await self.user_started()
        elif self.vad.speaking and not self.user_speaking:
            # speech that began while the agent talked without interrupting it (not
            # interruptible, or its last frames not yet confirmed played): up to 500 ms of it
            await self.user_started(BARGE_IN_PREROLL_FRAMES)
        if owner.closed:
            return

        if self.user_speaking:
            for partial in self.stt.feed(frame) or ():
                owner.mark("stt.partial", text=getattr(partial, "text", ""))
            if not self._vad_confirmed and await self._unconfirmed_turn_over():
                return
        else:
            self._preroll.append(frame)

        if vad == "stop" and self.user_speaking:
            self.user_speaking = False
            owner.turns.caller_stopped(  # (the VAD stops `stop_ms` after it)
                owner.elapsed() - -(-self._settings.vad.stop_ms // FRAME_MS) * FRAME_S)
            await owner.deliver(SDKSystemUserStoppedSpeakingEvent())
        if self.turn.process(self.vad.speaking):
            await self._end_of_turn()

    async def _unconfirmed_turn_over(self) -> bool:
        """After a barge-in the VAD itself may never start (speech it finds too short or
        quiet): then the VAD's own stop rule ends the turn, on its raw per-frame decision."""
        if self.vad.speaking:
            self._vad_confirmed = True
            return False
        self._unvoiced_run = 0 if self.vad.voiced else self._unvoiced_run + 1
        if self._unvoiced_run * FRAME_MS < self._settings.vad.stop_ms:
            return False
        self.user_speaking = False
        self._vad_confirmed = True
        owner = self._owner
        owner.turns.caller_stopped(owner.elapsed() - self._unvoiced_run * FRAME_S)
        await owner.deliver(SDKSystemUserStoppedSpeakingEvent())
        await self._end_of_turn()
        return True

    async def user_started(self, preroll: int = PREROLL_FRAMES) -> None:
        """The caller's speech began (the VAD, or a confirmed barge-in): the recogniser
        hears it from `preroll` frames before."""
        self.user_speaking = True
        self._vad_confirmed = self.vad.speaking
        self._unvoiced_run = 0
        for f in list(self._preroll)[-preroll:] if preroll > 0 else ():
            self.stt.feed(f)
        self._preroll.clear()
        owner = self._owner
        owner.turns.caller_started(owner.elapsed())
        await owner.deliver(SDKSystemUserStartedSpeakingEvent())

    # -- turn end -----------------------------------------------------------------------
    async def _end_of_turn(self) -> None:
        owner = self._owner
        if owner.closed:  # hung up during an await of this frame: the recogniser is gone
            return
        owner.turns.turn_ended(owner.elapsed())
        if isinstance(self.stt, AsyncEndOfTurn):
            # A network engine: the turn closes now, its transcript arrives later; caller
            # frames keep flowing meanwhile, and turns are reported in order.
            pending = self.stt.end_of_turn_async()
            previous = self._turn_task
            self._turn_task = asyncio.create_task(self._await_turn(previous, pending),
                                                  name=f"turn:{owner.call_id}")
            return
        await self._turn_result(self.stt.end_of_turn())

    async def _await_turn(self, previous: asyncio.Task[None] | None,
                          pending: Awaitable[Transcript | None]) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        try:
            result = await pending
        except Exception:
            log.exception("call %s: speech recogniser failed at the end of a turn",
                          self._owner.call_id)
            result = None
        if not self._owner.closed:
            await self._turn_result(result)

    async def _turn_result(self, result: Transcript | None) -> None:
        owner = self._owner
        text = (getattr(result, "text", "") or "").strip()
        owner.mark("turn.end", text=text)
        owner.turns.transcript(owner.elapsed())
        if not text:
            log.info("call %s: turn ended with no words recognised", owner.call_id)
            return
        await owner.user_said(text)

    def remember(self, role: str, text: str) -> None:
        """Add a message to the conversation; the oldest go beyond CONVERSATION_MESSAGES
        messages or CONVERSATION_CHARS characters (the newest message always stays)."""
        self.conversation.append({"role": role, "content": text})
        self._conversation_chars += len(text)
        while len(self.conversation) > 1 and (
                len(self.conversation) > CONVERSATION_MESSAGES
                or self._conversation_chars > CONVERSATION_CHARS):
            self._conversation_chars -= len(self.conversation.popleft()["content"])

    # -- a barge-in's pause (`gateway.barge_in.Ears`) -------------------------------------
    def hold(self, frame: np.ndarray) -> None:
        self._preroll.append(frame)

    def take_held(self) -> list[np.ndarray]:
        frames = list(self._preroll)[-BARGE_IN_PREROLL_FRAMES:]
        self._preroll.clear()
        return frames

    def hear(self, frame: np.ndarray) -> Any:
        return self.stt.feed(frame)

    def voiced(self, frame: np.ndarray) -> bool:
        return self.vad.is_voiced(frame)

    def forget_turn(self) -> None:
        """End the recogniser's utterance that heard the backchannel, unreported."""
        if self._owner.closed:
            return
        try:
            if isinstance(self.stt, AsyncEndOfTurn):
                pending = self.stt.end_of_turn_async()
                if isinstance(pending, asyncio.Future):  # (a task too): retrieve its end
                    pending.add_done_callback(_ignore_result)
            else:
                self.stt.end_of_turn()
        except Exception:
            log.exception("call %s: speech recogniser failed ending a backchannel",
                          self._owner.call_id)


def _ignore_result(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()  # (retrieved: a failure is the engine's to log)
