"""Conversation logs: one INFO line per turn (logger `gateway.conversation`), and the JSON
log format for log shippers.

A turn's line says what the caller said, what the agent said, the reply latency, whether
the caller interrupted, and what the caller heard of the agent, e.g.

    call CA42 [call-0123456789ab] turn 2: caller "what time is it" | agent "It is three
    o'clock." | reply 412 ms | heard all

With `log_redact` (`--log-redact`, `ATOMS_LOG_REDACT=1`) every text is replaced by
`[redacted]`. Text from the network (the caller's words, and the agent's, which may quote
them) has its control characters escaped and its length bounded (`gateway.logtext`).

With `log_format="json"` (`--log-format json`) every log line is one JSON object:
`ts`, `level`, `logger`, `message`, and for turn lines the structured fields under `turn`.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from gateway.logtext import printable
from gateway.turns import CallTurns, Turn

log = logging.getLogger("gateway.conversation")

TEXT_CHARS = 300  # of each text in a line
REDACTED = "[redacted]"


class ConversationLog:
    """A `TurnSink` that logs each finished turn in one line."""

    def __init__(self, redact: bool = False, logger: logging.Logger | None = None) -> None:
        self.redact = redact
        self.log = logger or log

    def _text(self, text: str | None) -> str | None:
        if text is None:
            return None
        if self.redact:
            return REDACTED if text else ""
        return printable(text.strip(), TEXT_CHARS)

    def fields(self, call: CallTurns, turn: Turn) -> dict[str, Any]:
        """The turn as the JSON line's `turn` object."""
        agent = self._text(turn.agent_text)
        heard = self._text(turn.heard_text)
        out: dict[str, Any] = {
            "call_id": printable(call.call_id, 128), "gateway_id": call.gateway_id,
            "transport": call.transport, "turn": turn.index,
            "caller": self._text(turn.caller_text), "agent": agent,
            "heard": heard, "interrupted": turn.interrupted,
            "heard_all": not turn.interrupted and turn.heard_text.strip()
            == turn.agent_text.strip(),
        }
        for name, value in (("reply_ms", turn.reply_latency), ("stt_ms", turn.stt_latency),
                            ("tts_first_audio_ms", turn.tts_first_audio),
                            ("llm_first_token_ms", turn.llm_first_token_s)):
            out[name] = None if value is None else round(value * 1000)
        if turn.pauses:
            out["bargein_ms"] = [round(p * 1000) for p in turn.pauses]
        if turn.resumed:
            out["resumed"] = turn.resumed
        return out

    # -- TurnSink -------------------------------------------------------------------------
    def call_started(self, call: CallTurns) -> None:
        return None

    def turn_done(self, call: CallTurns, turn: Turn) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        f = self.fields(call, turn)
        label = f["call_id"] if call.call_id == call.gateway_id else (
            f"{f['call_id']} [{call.gateway_id}]")
        parts = [f"call {label} turn {turn.index}:"]
        parts.append(f'caller "{f["caller"]}"' if f["caller"] is not None else "caller -")
        parts.append(f'| agent "{f["agent"]}"' if f["agent"] else "| agent -")
        if f["reply_ms"] is not None:
            parts.append(f"| reply {f['reply_ms']} ms")
        if turn.interrupted:
            parts.append(f'| interrupted, heard "{f["heard"]}"')
        elif f["agent"] and f["heard_all"]:
            parts.append("| heard all")
        elif f["agent"]:
            parts.append(f'| heard "{f["heard"]}"' if f["heard"] else "| heard nothing")
        if turn.resumed:
            parts.append(f"| resumed {turn.resumed}x")
        self.log.info(" ".join(parts), extra={"turn": f})

    def call_ended(self, call: CallTurns, outcome: str) -> None:
        return None

    def agent_error(self, call: CallTurns, severity: str) -> None:
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts (UTC, ISO 8601), level, logger, message, the
    exception's traceback as `exc`, and a turn line's fields as `turn`."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        turn = getattr(record, "turn", None)
        if isinstance(turn, dict):
            out["turn"] = turn
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)
