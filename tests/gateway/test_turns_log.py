"""The per-turn record (`gateway.turns`) and the conversation log lines made from it
(`gateway.convlog`): what a turn holds, when it finishes, redaction, escaping, JSON lines."""

from __future__ import annotations

import io
import json
import logging
from types import SimpleNamespace

from gateway.convlog import ConversationLog, JsonFormatter
from gateway.turns import CallTurns, Turn, outcome


class Collect:
    """A sink that keeps what it is given."""

    def __init__(self) -> None:
        self.turns: list[Turn] = []
        self.ended: list[str] = []
        self.errors: list[str] = []

    def call_started(self, call: CallTurns) -> None:
        pass

    def turn_done(self, call: CallTurns, turn: Turn) -> None:
        self.turns.append(turn)

    def call_ended(self, call: CallTurns, kind: str) -> None:
        self.ended.append(kind)

    def agent_error(self, call: CallTurns, severity: str) -> None:
        self.errors.append(severity)


def speak(text: str) -> SimpleNamespace:
    return SimpleNamespace(text=text)


def greeting_cut_then_question() -> tuple[CallTurns, Collect]:
    """The agent greets, the caller talks over it, the agent answers in full."""
    sink = Collect()
    call = CallTurns("CA1")
    call.sinks = [sink]
    call.started()
    call.agent_event("agent.speak", speak("Hello there, how can I help?"), 0.10)
    call.audio_ready(0.12)
    call.frame_out(0.13)
    call.detector_frame(False, 1.00)
    call.detector_frame(True, 1.02)
    call.detector_frame(True, 1.04)
    call.paused(1.14)
    call.interrupted(1.14)
    call.heard("Hello there,", 1.80, idle=True)  # the greeting is cut: its turn is done
    call.caller_started(1.80)
    call.caller_stopped(2.50)
    call.turn_ended(2.90)
    call.transcript(2.95)
    call.caller_said("what time is it", 2.95)
    call.agent_event("agent.llm.response.start", speak(""), 3.00)
    call.llm_first_token(0.25)
    call.agent_event("agent.llm.response.chunk", speak("It is "), 3.25)
    call.agent_event("agent.llm.response.chunk", speak("noon."), 3.30)
    call.tts_asked(3.30)  # the first whole sentence goes to the synthesiser
    call.audio_ready(3.32)
    call.frame_out(3.33)
    call.agent_event("agent.llm.response.end", speak(""), 3.34)
    call.heard("It is noon.", 4.50, idle=True)
    return call, sink


def test_turns_hold_their_times_and_finish_when_the_agent_is_done():
    call, sink = greeting_cut_then_question()
    assert len(sink.turns) == 2
    greeting, answer = sink.turns
    assert greeting.caller_text is None and greeting.interrupted
    assert greeting.heard_text == "Hello there,"
    assert abs(greeting.pauses[0] - 0.12) < 1e-9  # onset 1.02, paused 1.14
    assert abs(greeting.tts_first_audio - 0.02) < 1e-9
    assert answer.caller_text == "what time is it"
    assert answer.agent_text == "It is noon."
    assert abs(answer.reply_latency - 0.83) < 1e-9  # last voiced 2.50, first frame 3.33
    assert abs(answer.tts_first_audio - 0.02) < 1e-9  # the sentence, not the first chunk
    assert abs(answer.stt_latency - 0.05) < 1e-9
    assert answer.llm_first_token_s == 0.25
    assert not answer.interrupted and answer.heard_text == "It is noon."
    call.call_ended(5.0, "caller hung up")
    assert sink.ended == ["completed"]


def test_a_pause_inside_what_the_caller_says_stays_one_turn():
    sink = Collect()
    call = CallTurns("CA2")
    call.sinks = [sink]
    call.caller_started(1.0)
    call.caller_stopped(1.4)
    call.caller_started(1.7)  # no words yet: the same turn
    call.caller_stopped(2.2)
    call.caller_said("I want shoes", 2.7)
    call.agent_event("agent.speak", speak("Sure."), 2.9)
    call.frame_out(3.0)
    call.heard("Sure.", 3.5, idle=True)
    assert len(sink.turns) == 1
    assert sink.turns[0].caller_started == 1.0 and sink.turns[0].caller_stopped == 2.2


def test_the_answer_is_not_what_was_still_playing():
    """Typed words while the greeting plays on: its frames are not the answer's first."""
    sink = Collect()
    call = CallTurns("CA5")
    call.sinks = [sink]
    call.agent_event("agent.speak", speak("A long greeting."), 0.1)
    call.frame_out(0.2, ("u1", 20.0))
    call.caller_said("what time is it", 1.0, playing="u1")
    call.frame_out(1.02, ("u1", 940.0))  # the greeting goes on
    call.agent_event("agent.speak", speak("It is noon."), 1.3)
    call.frame_out(1.5, ("u1", 1420.0))
    call.heard("A long greeting.", 1.9, idle=False, utterance="u1")  # not the answer's
    call.frame_out(2.0, ("u2", 20.0))  # the answer's first frame
    call.heard("It is noon.", 3.0, idle=True, utterance="u2")
    answer = sink.turns[-1]
    assert answer.caller_text == "what time is it"
    assert answer.first_audio_out == 2.0 and abs(answer.reply_latency - 1.0) < 1e-9
    assert answer.heard_text == "It is noon."


def test_outcomes_and_errors():
    assert outcome("caller hung up", False) == "completed"
    assert outcome("agent hung up", True) == "transferred"
    assert outcome("protocol error: bad JSON", False) == "failed"
    assert outcome("voice loop failed", False) == "failed"
    assert outcome("idle timeout", False) == "failed"
    assert outcome("maximum call duration", False) == "completed"
    sink = Collect()
    call = CallTurns("CA3")
    call.sinks = [sink]
    call.agent_event("agent.error", SimpleNamespace(severity="fatal"), 1.0)
    call.agent_event("agent.error", SimpleNamespace(severity="x" * 500), 1.1)  # (remote)
    call.agent_event("agent.transfer_call", SimpleNamespace(), 2.0)
    call.call_ended(3.0, "agent hung up")
    call.call_ended(3.5, "again")  # once only
    assert sink.errors == ["fatal", "other"] and sink.ended == ["transferred"]


def test_a_sink_that_raises_does_not_stop_the_others(caplog):
    class Broken(Collect):
        def turn_done(self, call, turn):
            raise RuntimeError("boom")

    good = Collect()
    call = CallTurns("CA4")
    call.sinks = [Broken(), good]
    call.caller_said("hi", 1.0)
    call.call_ended(2.0, "caller hung up")
    assert len(good.turns) == 1 and "observability sink" in caplog.text


def lines(redact: bool, fmt: logging.Formatter | None = None) -> list[str]:
    logger = logging.getLogger(f"test.conversation.{redact}.{fmt is not None}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    if fmt is not None:
        handler.setFormatter(fmt)
    logger.handlers = [handler]
    call, _ = greeting_cut_then_question()
    call.sinks = [ConversationLog(redact=redact, logger=logger)]
    call.caller_said("stop\nINFO forged line \x1b[31m", 5.0)
    call.call_ended(6.0, "caller hung up")
    return out.getvalue().splitlines()


def test_log_line_says_who_said_what_and_escapes_control_characters():
    call, _ = greeting_cut_then_question()
    out = io.StringIO()
    logger = logging.getLogger("test.conversation.plain")
    logger.propagate, logger.handlers = False, [logging.StreamHandler(out)]
    logger.setLevel(logging.INFO)
    call.sinks = [ConversationLog(logger=logger)]
    call.caller_said("stop\nINFO forged line \x1b[31m", 5.0)
    call.call_ended(6.0, "caller hung up")
    (line,) = out.getvalue().splitlines()  # one line, whatever the caller's text holds
    assert line.startswith("call CA1 turn 2: caller \"stop\\nINFO forged line \\x1b[31m\"")
    assert "\x1b" not in line


def test_redacted_lines_have_no_words_and_json_lines_parse():
    plain = lines(redact=False, fmt=JsonFormatter())
    assert len(plain) == 1  # the two earlier turns were logged before the handler was set
    redacted = lines(redact=True, fmt=JsonFormatter())
    for text in redacted:
        obj = json.loads(text)
        assert obj["level"] == "INFO" and obj["logger"].startswith("test.conversation")
        assert "forged" not in text and "stop" not in obj["message"]
        assert obj["turn"]["caller"] == "[redacted]"
    obj = json.loads(plain[0])
    assert obj["turn"]["caller"] == "stop\\nINFO forged line \\x1b[31m"
    assert obj["turn"]["call_id"] == "CA1" and obj["turn"]["turn"] == 2
