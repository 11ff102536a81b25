"""SentenceGatherer: cut streamed LLM text into speakable sentences as soon as each is complete.

Rules (decided here, tested in tests/media/test_sentences.py):

- A sentence ends at a run of `. ! ? ; : …` (plus any closing quotes or brackets) that
  is followed by whitespace, or at a newline. Requiring the whitespace means a chunk
  that ends in "3." or "10:" waits for the next chunk, so decimals ("3.5"), times
  ("10:30"), "e.g." split across chunks and URLs are never cut.
- A period is not an end after a known abbreviation ("Dr.", "Mr.", "e.g.", "i.e.",
  "vs." ...), a single capital initial ("J. Smith"), or a list number at the start of
  a sentence ("1. Open the app").
- Speech should start quickly: while nothing of the reply has been emitted yet, the
  first clause is released early at a comma once it is at least `first_clause_chars`
  (40) characters long. Later commas do not split.
- A run-on stretch longer than `max_chars` (250) is cut at its last comma, or else at
  its last space, so one TTS request never grows without bound.
- `flush()` returns whatever is left at the end of the reply.

Every emitted piece is stripped and non-empty, and no text is lost: the pieces plus
`flush()` equal the input except for whitespace. Each `push` rescans only the pending
(unfinished) text, which is at most about one sentence long.
"""

from __future__ import annotations

import re

__all__ = ["SentenceGatherer"]

_END = re.compile(r"[.!?;:…]+[\"'”’)\]]*(?=\s)|\n")
_COMMA = re.compile(r",[\"'”’)\]]*(?=\s)")
_SPACE = re.compile(r"\s")
_WORD_BEFORE = re.compile(r"(\S+)$")
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs cf approx fig mt no e.g i.e a.k.a".split()
)


def _is_abbreviation(text: str, dot: int) -> bool:
    """True if the period at `text[dot]` closes an abbreviation, an initial or a list number."""
    m = _WORD_BEFORE.search(text, 0, dot)
    if m is None:
        return False
    word = m.group(1).lstrip("\"'“‘([")
    if not word:
        return False
    if word.lower() in _ABBREVIATIONS:
        return True
    if len(word) == 1 and word.isupper():
        return True  # an initial: "J. Smith"
    return word.isdigit() and not text[: m.start()].strip()  # "1. Open the app"


class SentenceGatherer:
    """Feed text chunks with `push`; get back each sentence as soon as it is complete."""

    def __init__(self, first_clause_chars: int = 40, max_chars: int = 250) -> None:
        if first_clause_chars < 1 or max_chars < 2:
            raise ValueError("first_clause_chars must be >= 1 and max_chars >= 2")
        self.first_clause_chars = first_clause_chars
        self.max_chars = max_chars
        self._buf = ""
        self._emitted = False

    def push(self, chunk: str) -> list[str]:
        """Add a chunk of text; return every sentence completed by it (maybe none)."""
        if not isinstance(chunk, str):
            raise TypeError(f"SentenceGatherer.push expects str, got {type(chunk).__name__}")
        self._buf = (self._buf + chunk) if self._buf else chunk.lstrip()
        out: list[str] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                break
            piece, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if piece:
                out.append(piece)
                self._emitted = True
        return out

    def flush(self) -> str | None:
        """The end of the reply: return the remaining text (None if only whitespace)."""
        rest, self._buf = self._buf.strip(), ""
        self._emitted = False
        return rest or None

    def _next_cut(self) -> int | None:
        buf = self._buf
        cut = None
        for m in _END.finditer(buf):
            if m.group() == "." and _is_abbreviation(buf, m.start()):
                continue
            cut = m.end()
            break
        if not self._emitted:
            for m in _COMMA.finditer(buf, 0, cut if cut is not None else len(buf)):
                if len(buf[: m.start()].strip()) >= self.first_clause_chars:
                    return m.end()
        if cut is not None:
            return cut
        if len(buf) > self.max_chars:
            head = buf[: self.max_chars]
            commas = [m.end() for m in _COMMA.finditer(head)]
            if commas:
                return commas[-1]
            spaces = [m.start() for m in _SPACE.finditer(buf)]
            before = [i for i in spaces if i <= self.max_chars]
            if before:
                return before[-1]
            if spaces:
                return spaces[0]  # one huge word: cut right after it
        return None
