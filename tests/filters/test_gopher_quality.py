"""Gopher quality rules: each threshold from both sides, the reported value, and datatrove's decision."""

import pytest
from filter_helpers import documents, reasons, run
from gristmill.filters.gopher_quality import GopherQuality, GopherQualityConfig

SENTENCE = "the cat sat with the dog and that was fine"  # 10 words, 33 letters
PROSE = " ".join([SENTENCE] * 6)  # 60 words


def words(n: int) -> str:
    return " ".join((SENTENCE.split() * (n // 10 + 1))[:n])


def lines(*items: str) -> str:
    return "\n".join(items)


# (rule, text just past the threshold, text just inside it, config overrides)
CASES = [
    ("short_doc", words(49), words(50), {}),
    ("long_doc", words(61), words(60), {"max_doc_words": 60}),
    ("below_avg_word_length", PROSE.replace("with", "in").replace("that", "it").replace("fine", "ok"), PROSE, {}),
    ("above_avg_word_length", PROSE + f" {'w' * 17}" * 60, PROSE + f" {'w' * 16}" * 60, {}),  # mean 10.15 vs 9.65
    ("too_many_hashes", PROSE + " #" * 7, PROSE + " #" * 6, {}),
    ("too_many_ellipses", "... " * 4 + "… " * 3 + PROSE, "... " * 3 + "… " * 3 + PROSE, {}),
    ("too_many_bullet_lines", lines(*["- " + SENTENCE] * 10), lines(*["- " + SENTENCE] * 9, SENTENCE), {}),
    ("too_many_ellipsis_lines", lines(*[SENTENCE + " ..."] * 4, *[SENTENCE] * 6), lines(*[SENTENCE + " …"] * 3, *[SENTENCE] * 7), {}),
    ("few_alpha_words", PROSE + " 1234" * 16, PROSE + " 1234" * 15, {}),  # 60/76 vs 60/75 words with a letter
    ("few_stop_words", " ".join(["this cat sat with every big dog near our house"] * 6),
     " ".join(["this cat sat with every big dog near the house"] * 6), {}),
]


@pytest.mark.parametrize("rule, failing, passing, overrides", CASES, ids=[case[0] for case in CASES])
def test_rule_on_both_sides_of_its_threshold(rule: str, failing: str, passing: str, overrides: dict) -> None:
    stage = GopherQuality(GopherQualityConfig(**overrides))
    assert reasons(stage, failing, passing) == [rule, None]


@pytest.mark.parametrize("rule, failing, passing, overrides", CASES, ids=[case[0] for case in CASES])
def test_same_decision_as_datatrove(rule: str, failing: str, passing: str, overrides: dict) -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import GopherQualityFilter

    theirs = GopherQualityFilter(**overrides)
    ours = reasons(GopherQuality(GopherQualityConfig(**overrides)), failing, passing)
    assert [theirs.filter(Document(text=t, id="x")) is True for t in (failing, passing)] == [r is None for r in ours]


def test_removed_rows_carry_the_measured_value() -> None:
    _, removed, stats = run(GopherQuality(), documents(words(49), PROSE, PROSE + " #" * 12))
    assert removed["d0"] == ("short_doc", 49.0)
    assert removed["d2"][0] == "too_many_hashes"
    assert removed["d2"][1] == pytest.approx(12 / 72)
    assert stats.removed == {"short_doc": 1, "too_many_hashes": 1}


def test_none_switches_a_rule_off() -> None:
    assert reasons(GopherQuality(GopherQualityConfig(min_doc_words=None, min_stop_words=None)), words(20)) == [None]


def test_empty_and_unicode_documents() -> None:
    german = " ".join(["der Hund und die Katze über dem Fluß"] * 10)
    assert reasons(GopherQuality(), "", "   \n ", german) == ["short_doc", "short_doc", "few_stop_words"]
    assert reasons(GopherQuality(GopherQualityConfig(stop_words=["der", "die", "und"])), german) == [None]


def test_negative_word_threshold_is_rejected() -> None:
    with pytest.raises(ValueError, match="min_doc_words"):
        GopherQualityConfig(min_doc_words=-1)
