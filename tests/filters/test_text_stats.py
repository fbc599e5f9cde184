"""The vectorized text helpers against the plain-Python definitions they replace, on random text."""

import random

import numpy as np
import pyarrow as pa
import pytest
from gristmill.filters import text_stats

ALPHABET = ["a", "b", "é", "Ж", "字", " ", "\t", "\n", "\n", "\r", "\r\n", "\x0b", "\x1c", "\x85", "\u2028", "\u3000",
            ".", "...", "#", "-", "•", "'", "_", "😀", "n't", "1", "/"]


def random_texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40))) for _ in range(count)]


@pytest.fixture
def texts() -> list[str]:
    return random_texts(300, seed=random.randrange(2**31))


def as_lists(parts: text_stats.Parts) -> list[list[str]]:
    out: list[list[str]] = [[] for _ in range(parts.rows)]
    for parent, value in zip(parts.parents, parts.values.to_pylist()):
        out[parent].append(value)
    return out


def test_splitlines_matches_python(texts: list[str]) -> None:
    assert as_lists(text_stats.splitlines(pa.array(texts, pa.large_string()))) == [t.splitlines() for t in texts]


def test_strip_matches_python(texts: list[str]) -> None:
    assert text_stats.strip(pa.array(texts, pa.large_string())).to_pylist() == [t.strip() for t in texts]


def test_split_matches_re_split(texts: list[str]) -> None:
    import re

    got = as_lists(text_stats.split(pa.array(texts, pa.large_string()), r"\n+"))
    assert got == [re.split(r"\n+", t) for t in texts]


def test_duplicates_match_a_set_scan(texts: list[str]) -> None:
    lines = text_stats.split(pa.array(texts, pa.large_string()), "\n")
    repeated, repeated_chars = lines.duplicates()
    for row, parts in enumerate(as_lists(lines)):
        seen, count, chars = set(), 0, 0
        for part in parts:
            if part in seen:
                count, chars = count + 1, chars + len(part)
            seen.add(part)
        assert (repeated[row], repeated_chars[row]) == (count, chars)


def test_words_split_like_spacy_english() -> None:
    text = "(Hello), don't -- e.g. 31-bit GNU/Linux __init__ ... /proc -v .SH NET-2 1-2 \"quoted.\" 50% $5"
    expected = ["(", "Hello", ")", ",", "do", "n't", "--", "e.g", ".", "31", "-", "bit", "GNU", "/", "Linux",
                "_", "_", "init", "_", "_", "...", "/proc", "-v", ".SH", "NET-2", "1", "-", "2", '"', "quoted", ".",
                '"', "50", "%", "$", "5"]  # spaCy keeps "e.g." whole (an abbreviation exception); all else is the same
    assert as_lists(text_stats.words(pa.array([text, ""], pa.large_string()))) == [expected, []]


def test_safe_ratio_is_nan_for_zero_denominators() -> None:
    ratio = text_stats.safe_ratio(np.array([1, 2]), np.array([0, 4]))
    assert np.isnan(ratio[0]) and ratio[1] == 0.5
