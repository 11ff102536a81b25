"""The message of an OpenAI API error, as the server wrote it (for one-line log entries).

The `openai` package's own `str(exc)` prefixes "Error code: N - " and may dump the whole
body; servers put the human part in `{"error": {"message": ...}}`.
"""

from __future__ import annotations

import openai

__all__ = ["error_message"]


def error_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return exc.message
