"""SentenceGatherer: where replies are cut, and that no text is ever lost or reordered."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from media.sentences import SentenceGatherer


def gather(chunks: list[str], **kw: int) -> list[str]:
    g = SentenceGatherer(**kw)
    out: list[str] = []
    for c in chunks:
        out.extend(g.push(c))
    rest = g.flush()
    if rest is not None:
        out.append(rest)
    return out


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def test_splits_on_sentence_ends() -> None:
    text = "Hello there! How are you? I am fine. Really; truly: yes.\nNew line here"
    assert gather([text]) == [
        "Hello there!", "How are you?", "I am fine.", "Really;", "truly:", "yes.",
        "New line here",
    ]


def test_sentence_released_when_the_next_word_arrives() -> None:
    g = SentenceGatherer()
    assert g.push("It is sunny") == []
    assert g.push(" today.") == []  # the next chunk might be "5", as in "today.5"
    assert g.push(" Bring") == ["It is sunny today."]
    assert g.push(" a hat.") == []
    assert g.flush() == "Bring a hat."
    assert g.flush() is None


def test_no_split_inside_numbers_times_and_abbreviations() -> None:
    text = ("Dr. Smith met Mr. J. Doe at 10:30 to pay $3.50, e.g. for coffee, i.e. a drink. "
            "Then they left.")
    assert gather([text], first_clause_chars=1000) == [
        "Dr. Smith met Mr. J. Doe at 10:30 to pay $3.50, e.g. for coffee, i.e. a drink.",
        "Then they left.",
    ]


def test_list_numbers_do_not_end_a_sentence() -> None:
    assert gather(["1. Open the app.\n2. Tap call."]) == ["1. Open the app.", "2. Tap call."]


def test_quotes_and_brackets_stay_with_their_sentence() -> None:
    assert gather(['He said "stop." Then (quietly!) he left.']) == [
        'He said "stop."', "Then (quietly!)", "he left.",
    ]


def test_first_long_clause_is_released_at_a_comma() -> None:
    g = SentenceGatherer(first_clause_chars=40)
    clause = "Yes, thanks for calling the city library help line,"
    assert g.push(clause) == []  # "Yes," is too short; the last comma awaits a space
    assert g.push(" how can") == [clause]
    assert g.push(" I help, today?") == []  # later commas do not split
    assert g.push(" Bye") == ["how can I help, today?"]


def test_short_first_clause_waits_for_the_sentence_end() -> None:
    assert gather(["Sure, I can do that. Okay, bye"]) == ["Sure, I can do that.", "Okay, bye"]


def test_run_on_text_is_cut_at_max_chars() -> None:
    words = " ".join(f"word{i}" for i in range(200))
    pieces = gather([words], max_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert len(pieces) > 1
    assert squash("".join(pieces)) == squash(words)


def test_one_huge_word_is_kept_whole() -> None:
    word = "x" * 300
    assert gather([word + " tail"], max_chars=100) == [word, "tail"]


def test_whitespace_only_and_empty_chunks() -> None:
    assert gather(["", "   ", "\n\n", " "]) == []


def test_bad_input_is_a_clear_error() -> None:
    with pytest.raises(TypeError):
        SentenceGatherer().push(b"bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SentenceGatherer(first_clause_chars=0)


_ALPHABET = st.sampled_from(list("ab Dr.e.g1:3!?;,\n\t\"')…") + ["Mr.", "e.g.", "10:30", "3.5", " "])


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(_ALPHABET, max_size=80), cuts=st.lists(st.integers(0, 400), max_size=20),
       first=st.integers(1, 60), max_chars=st.integers(2, 120))
def test_no_text_lost_for_any_chunking(parts: list[str], cuts: list[int], first: int,
                                       max_chars: int) -> None:
    text = "".join(parts)
    points = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    pieces = gather(chunks, first_clause_chars=first, max_chars=max_chars)
    assert squash("".join(pieces)) == squash(text)
    assert all(p and p == p.strip() for p in pieces)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), cuts=st.lists(st.integers(0, 300), max_size=10))
def test_any_unicode_text_survives(text: str, cuts: list[int]) -> None:
    points = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert squash("".join(gather(chunks))) == squash(text)


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_ALPHABET, max_size=80), cuts=st.lists(st.integers(0, 400), max_size=20),
       first=st.integers(1, 60))
def test_split_points_do_not_depend_on_chunking(parts: list[str], cuts: list[int],
                                                first: int) -> None:
    text = "".join(parts)
    points = sorted({c % (len(text) + 1) for c in cuts})
    chunks = [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]
    assert gather(chunks, first_clause_chars=first) == gather([text], first_clause_chars=first)


def test_chunking_does_not_change_the_split_of_normal_prose() -> None:
    text = ("Good morning, and welcome to the support line of the city library. "
            "Our hours are 9:30 to 5.30 today! Do you need help, e.g. with a renewal?")
    whole = gather([text])
    by_char = gather(list(text))
    by_word = gather(re.findall(r"\S+\s*", text))
    assert whole == by_char == by_word
    assert whole[0] == "Good morning, and welcome to the support line of the city library."
