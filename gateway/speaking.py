"""Speaking: the agent's side of a call. Sentences, speech, agent audio, playout, actions.

What the agent says becomes audio in a paced playout buffer: its words (`agent.speak`, or an
LLM response streamed in chunks and cut into sentences) through the `Speaker`, its own audio
(`agent.audio`, checked, bounded, resampled to 16 kHz) straight in, key presses as tones.
Each of these is an utterance with its own id, which the playout reports as heard (played,
or cut by a barge-in). The call's tick takes one frame a tick (`next_frame`); the agent's
hang-up or transfer waits here until everything before it has played.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np

from agent.events import SDKAgentAudioEvent
from gateway.audio_edge import audio_problem
from gateway.speaker import Speaker
from media.dtmf_tones import dtmf_tones
from media.frames import SAMPLE_RATE
from media.playout import Heard, PlayoutBuffer
from media.resample import StreamResampler
from media.sentences import SentenceGatherer
from media.tts import TtsEngine
from runtime.tasks import cancel_and_wait

if TYPE_CHECKING:
    from gateway.call import CallSettings
    from gateway.call_owner import CallOwner

log = logging.getLogger(__name__)

# A far end that reports playback (marks) but has not confirmed what was all sent: after
# this long the audio is taken as played, so the call can move on (a lost mark).
CONFIRM_TIMEOUT_S = 1.5
_NO_AUDIO = np.zeros(0, dtype=np.int16)


class Speaking:
    """One call's speaking side."""

    def __init__(self, owner: CallOwner, settings: CallSettings, tts: TtsEngine,
                 on_audio: Callable[[], None]) -> None:
        self._owner = owner
        self._settings = settings
        self.playout = PlayoutBuffer(far_end_confirms=settings.far_end_confirms)
        # (`on_audio`: audio was queued; the speaker lets go of it when it closes)
        self.speaker = Speaker(tts, self.playout, on_audio=on_audio, call_id=owner.call_id)
        self._gatherer = SentenceGatherer()
        self._utterances = itertools.count(1)
        self._response_id: str | None = None  # utterance of the LLM response being spoken
        self._discard_response = False
        self._audio_uid: str | None = None  # utterance built from agent.audio chunks
        self._agent_audio_rs: dict[int, StreamResampler] = {}
        self._audio_dropped = 0  # agent.audio chunks refused (bad rate, over the queue cap)
        self._stall_t: float | None = None
        self._after_drain: list[tuple[str, str]] = []  # ("hangup"|"transfer", target)
        self._action: asyncio.Task[None] | None = None  # the last hang-up or transfer

    @property
    def busy(self) -> bool:
        """Agent audio is playing or queued to play."""
        return self.playout.is_playing or self.speaker.busy

    @property
    def response_id(self) -> str | None:
        """The utterance of the LLM response being spoken, if one is."""
        return self._response_id

    async def close(self) -> None:
        """The call is over: no more speech, and no pending action (unless it is the one
        closing the call)."""
        await self.speaker.close()
        await cancel_and_wait(self._action)  # (not when it is this hang-up itself)

    def _new_utterance(self) -> str:
        return f"{self._owner.call_id}-u{next(self._utterances)}"

    # -- what the agent says ----------------------------------------------------------
    def say(self, text: str) -> None:
        """`agent.speak`: one utterance."""
        self._owner.turns.tts_asked(self._owner.elapsed())
        self.speaker.say(self._new_utterance(), text)

    def response_started(self) -> None:
        self._response_id = self._new_utterance()
        self._discard_response = False
        self._gatherer = SentenceGatherer()

    def response_chunk(self, text: str) -> None:
        """A piece of an LLM response: its whole sentences go to the speaker."""
        if self._discard_response:
            return
        if self._response_id is None:
            self._response_id = self._new_utterance()
        for sentence in self._gatherer.push(text):
            self._owner.turns.tts_asked(self._owner.elapsed())
            self.speaker.say(self._response_id, sentence, last=False)

    def response_ended(self) -> None:
        rest = self._gatherer.flush() or ""
        if self._response_id is not None and not self._discard_response:
            if rest.strip():
                self._owner.turns.tts_asked(self._owner.elapsed())
            self.speaker.say(self._response_id, rest, last=True)
        self._response_id = None
        self._discard_response = False

    def agent_audio(self, event: SDKAgentAudioEvent) -> None:
        """Agent audio from the session: checked, bounded, resampled, queued."""
        problem = audio_problem(event)
        if problem is not None:
            self._drop_audio(problem)
            return
        rate = event.sample_rate
        queued = self.playout.queued_ms / 1000 + self.speaker.queued_samples / SAMPLE_RATE
        seconds = len(event.pcm) / 2 / rate
        limit = self._settings.max_agent_audio_s
        if queued + seconds > limit:
            self._drop_audio(f"{queued:.1f} s of agent audio already queued; at most "
                             f"{limit:g} s may be")
            return
        pcm = np.frombuffer(event.pcm, dtype="<i2")
        if rate != SAMPLE_RATE:
            # one stateful resampler per rate for the whole call: a fresh one per
            # chunk would drop each chunk's filter tail and click at every boundary
            rs = self._agent_audio_rs.get(rate)
            if rs is None:
                rs = self._agent_audio_rs[rate] = StreamResampler(rate, SAMPLE_RATE)
            pcm = rs.process(pcm)
        # consecutive agent.audio events are one utterance: no padding between chunks
        if self._audio_uid is None:
            self._audio_uid = self._new_utterance()
        self.speaker.play(self._audio_uid, pcm, last=False)

    def _drop_audio(self, why: str) -> None:
        """Agent audio that cannot be taken: dropped, with a log line (the first of a call,
        then every 100th: an agent that keeps sending it cannot flood the log)."""
        self._audio_dropped += 1
        if self._audio_dropped % 100 == 1:
            log.warning("call %s: agent audio dropped (%d so far): %s", self._owner.call_id,
                        self._audio_dropped, why)

    def close_audio(self) -> None:
        """End the utterance that streamed `agent.audio` chunks are building, if any."""
        if self._audio_uid is not None:
            self.speaker.play(self._audio_uid, _NO_AUDIO, last=True)
            self._audio_uid = None

    def play_tones(self, digits: str) -> None:
        """Key presses as tones after the audio already queued (an utterance with no words,
        like `agent.audio`, so it is cut by barge-in like speech)."""
        self.speaker.play(self._new_utterance(), dtmf_tones(digits), last=True)

    def silence(self) -> list[Heard]:
        """Flush playout and forget the response being spoken; returns what was heard."""
        self._discard_response = self._response_id is not None
        self._response_id = None
        self._audio_uid = None
        self._gatherer = SentenceGatherer()
        self.speaker.drop_queued()
        return self.playout.flush()

    # -- the call's tick --------------------------------------------------------------
    def next_frame(self) -> np.ndarray | None:
        """The frame to send this tick, if there is one. With none: a node's audio stream
        that ran dry ends its utterance, and audio all sent but never confirmed by the far
        end is taken as played after CONFIRM_TIMEOUT_S."""
        frame = self.playout.pop()
        if frame is not None or self.playout.paused:
            # (held audio is not lost audio: no "assumed played" timeout)
            self._stall_t = None
        elif not self.speaker.busy:
            self.close_audio()  # the node's audio stream ran dry: finish its utterance
            if self._settings.far_end_confirms and self.playout.queued_ms == 0:
                self._confirm_if_stalled()
        return frame

    def finished(self) -> Iterator[tuple[str, str]]:
        """Utterances that finished playing since the last call: (id, the text heard)."""
        playout = self.playout
        for uid in playout.drain_finished():
            yield uid, playout.heard_text(uid)

    def _confirm_if_stalled(self) -> None:
        """Everything is sent but the far end has not confirmed it (a lost mark): after
        CONFIRM_TIMEOUT_S, take the audio as played so the call can move on."""
        now = self._owner.now()
        if self._stall_t is None:
            self._stall_t = now
        elif now - self._stall_t >= CONFIRM_TIMEOUT_S:
            pos = self.playout.position()
            if pos is not None:
                log.info("call %s: no far-end confirmation for %s; assuming it played",
                         self._owner.call_id, pos[0])
                self.playout.confirm(*pos)
            self._stall_t = None

    # -- after the audio: the agent's hang-up or transfer ------------------------------
    def after_drain(self, action: str, target: str = "") -> None:
        """"hangup" or "transfer" (to `target`) once everything before it has played."""
        self._after_drain.append((action, target))

    @property
    def actions_pending(self) -> bool:
        return bool(self._after_drain)

    def run_due_action(self) -> None:
        """Playout is empty: run a pending hang-up or transfer once speech is done too."""
        if not self._after_drain or self.speaker.busy or self._response_id is not None:
            return
        action, target = self._after_drain.pop(0)
        owner = self._owner
        owner.mark(f"call.{action}", target=target)
        # A task, not in the tick itself: the shared media tick must not wait on one
        # call's transfer.
        # Actions run in order: a transfer's REFER goes out before a later hang-up's BYE.
        self._action = asyncio.create_task(self._run_action(self._action, action, target),
                                           name=f"{action}:{owner.call_id}")

    async def _run_action(self, previous: asyncio.Task[None] | None, action: str,
                          target: str) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        if action == "hangup":
            await self._owner.hang_up()
        else:
            await self._owner.transfer(target)
