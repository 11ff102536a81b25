"""What the OpenAI-style speech engines share (`media/tts/openai.py`, `media/stt/openai.py`):
where the server is, its key, one client made on first use, and error messages as the
server wrote them.

The key comes from the argument, else `OPENAI_API_KEY`; the server from the argument, else
`OPENAI_BASE_URL`, else OpenAI. With a base URL and no key a placeholder key is sent, so
local servers that ignore keys work. The client makes no retries: a caller is waiting,
and a sentence or a turn retried a second later is worse than one skipped.
"""

from __future__ import annotations

import os

import openai

__all__ = ["OpenAIEndpoint", "error_message"]

_PLACEHOLDER_KEY = "not-needed"


class OpenAIEndpoint:
    def __init__(self, api_key: str | None, base_url: str | None, timeout: float) -> None:
        self.url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        self.key = api_key or os.environ.get("OPENAI_API_KEY") or None
        if self.key is None and self.url:
            self.key = _PLACEHOLDER_KEY
        self._timeout = openai.Timeout(timeout, connect=min(timeout, 5.0))
        self._client: openai.AsyncOpenAI | None = None

    @property
    def server(self) -> str:
        return self.url or "api.openai.com"

    def client(self) -> openai.AsyncOpenAI:
        """The client (one connection pool), made on first use; callers check the key."""
        if self._client is None:
            self._client = openai.AsyncOpenAI(api_key=self.key, base_url=self.url,
                                              timeout=self._timeout, max_retries=0)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def error_message(exc: openai.APIStatusError) -> str:
    """The message of an API error as the server wrote it (for one-line log entries): the
    package's own `str(exc)` prefixes "Error code: N - " and may dump the whole body;
    servers put the human part in `{"error": {"message": ...}}`."""
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return exc.message
