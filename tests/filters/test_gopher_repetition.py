"""Gopher repetition rules: measured values against plain-Python definitions, both sides of each threshold."""

import random
import re
from collections import Counter

import pytest
from filter_helpers import documents, reasons, run
from gristmill.filters.gopher_repetition import GopherRepetition, GopherRepetitionConfig

OFF = {
    "dup_line_frac": None, "dup_para_frac": None, "dup_line_char_frac": None, "dup_para_char_frac": None,
    "top_n_grams": [], "dup_n_grams": [],
}


def top_ngram_fraction(text: str, n: int) -> float:
    words = text.split()
    grams = Counter(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))
    gram, count = grams.most_common(1)[0]
    return len(gram) * count / len(text)


def repeated_ngram_fraction(text: str, n: int) -> float:
    words, seen, chars, i = text.split(), set(), 0, 0
    while i <= len(words) - n:
        gram = tuple(words[i : i + n])
        if gram in seen:
            chars, i = chars + sum(map(len, gram)), i + n
        else:
            seen.add(gram)
            i += 1
    return chars / len(text)


def duplicate_fractions(parts: list[str], text: str) -> tuple[float, float]:
    seen, count, chars = set(), 0, 0
    for part in parts:
        if part in seen:
            count, chars = count + 1, chars + len(part)
        seen.add(part)
    return count / len(parts), chars / len(text)


def random_text(rng: random.Random, vocabulary: int, lines: int, reuse: float = 0.5) -> str:
    """Random lines joined by one or two newlines; with probability `reuse` a line repeats an earlier one."""
    drawn: list[str] = []
    for _ in range(lines):
        if drawn and rng.random() < reuse:
            drawn.append(rng.choice(drawn))
        else:
            drawn.append(" ".join(f"w{rng.randrange(vocabulary)}" for _ in range(rng.randint(2, 12))))
    return "".join(line + rng.choice(["\n", "\n", "\n\n"]) for line in drawn).strip()


@pytest.fixture
def text() -> str:
    """A fresh random text in which every rule measures a repeat (at 0 there is no threshold to cross)."""
    rng = random.Random(random.randrange(2**31))
    while True:
        drawn = random_text(rng, vocabulary=rng.choice([20, 200, 5000]), lines=rng.randint(6, 60))
        if all(value > 0 for _, value in measured(drawn).values()):
            return drawn


def measured(text: str) -> dict[str, tuple[dict, float]]:
    paragraphs = re.split(r"\n{2,}", text.strip())
    lines = re.split(r"\n+", text)
    para_frac, para_chars = duplicate_fractions(paragraphs, text)
    line_frac, line_chars = duplicate_fractions(lines, text)
    rules = {
        "dup_para_frac": ({"dup_para_frac": para_frac}, para_frac),
        "dup_para_char_frac": ({"dup_para_char_frac": para_chars}, para_chars),
        "dup_line_frac": ({"dup_line_frac": line_frac}, line_frac),
        "dup_line_char_frac": ({"dup_line_char_frac": line_chars}, line_chars),
    }
    for n in (2, 3, 4):
        value = top_ngram_fraction(text, n)
        rules[f"top_{n}_gram"] = ({"top_n_grams": [(n, value)]}, value)
    for n in (5, 8):
        value = repeated_ngram_fraction(text, n)
        rules[f"dup_{n}_gram"] = ({"dup_n_grams": [(n, value)]}, value)
    return rules


def with_threshold(options: dict, shift: float) -> GopherRepetitionConfig:
    (key, value), = options.items()
    shifted = [(n, frac + shift) for n, frac in value] if isinstance(value, list) else value + shift
    return GopherRepetitionConfig(**{**OFF, key: shifted})


@pytest.mark.parametrize("rule", ["dup_para_frac", "dup_para_char_frac", "dup_line_frac", "dup_line_char_frac",
                                  "top_2_gram", "top_3_gram", "top_4_gram", "dup_5_gram", "dup_8_gram"])
def test_value_and_both_sides_of_the_threshold(rule: str, text: str) -> None:
    options, value = measured(text)[rule]
    _, removed, _ = run(GopherRepetition(with_threshold(options, -1e-9)), documents(text))
    assert removed["d0"][0] == rule
    assert removed["d0"][1] == pytest.approx(value)
    assert reasons(GopherRepetition(with_threshold(options, 1e-9)), text) == [None]


def test_defaults_decide_like_datatrove() -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherRepetitionFilter

    rng = random.Random(7)
    texts = [
        random_text(rng, vocabulary, lines, reuse)
        for vocabulary in (5, 50, 5000) for lines in (10, 40, 100) for reuse in (0.0, 0.05, 0.2, 0.5)
    ]
    theirs = GopherRepetitionFilter()
    expected = [theirs.filter(Document(text=t, id="x")) is True for t in texts]
    assert [r is None for r in reasons(GopherRepetition(), *texts)] == expected
    assert 0 < sum(expected) < len(texts)


def test_empty_and_blank_documents() -> None:
    assert reasons(GopherRepetition(), "", "\n\n", "a\n\na") == ["empty", "dup_line_frac", "dup_para_frac"]


def test_ngram_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="n-gram"):
        GopherRepetitionConfig(top_n_grams=[(0, 0.2)])
