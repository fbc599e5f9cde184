"""FineWeb rules on both sides of each threshold, and datatrove's decisions on the same pages."""

import pytest
from filter_helpers import documents, reasons, run
from gristmill.filters.fineweb import FineWebQuality, FineWebQualityConfig

SENTENCE = "The mill grinds the grain that the farmers bring in the autumn."  # 63 chars, 12 words


def page(punctuated: int, bare: int, short: int = 0) -> str:
    lines = [f"{SENTENCE} {i}." for i in range(punctuated)]
    lines += [f"{SENTENCE[:-1]} {i}" for i in range(bare)]
    lines += [f"Menu item {i}" for i in range(short)]
    return "\n".join(lines)


# (rule, failing page, passing page)
CASES = [
    ("empty", " \n\t\n", page(1, 0)),
    ("line_punct_ratio", page(1, 8), page(2, 14)),  # 1/9 = 0.111 < 0.12; 2/16 = 0.125
    ("short_line_ratio", page(3, 0, short=7), page(4, 0, short=8)),  # 7/10 > 0.67; 8/12 = 0.667
    ("char_dup_ratio", page(3, 0) + "\n" + f"{SENTENCE} 0.", page(30, 0) + "\nok\nok"),
    ("list_ratio", "\n".join(f"Incomprehensibilities{i} notwithstanding." for i in range(12)),  # 11 / 36 words
     "\n".join(f"Incomprehensibilities{i} notwithstanding really." for i in range(12))),  # 11 / 48
]


@pytest.mark.parametrize("rule, failing, passing", CASES, ids=[case[0] for case in CASES])
def test_rule_on_both_sides_of_its_threshold(rule: str, failing: str, passing: str) -> None:
    assert reasons(FineWebQuality(), failing, passing) == [rule, None]


@pytest.mark.parametrize("rule, failing, passing", CASES, ids=[case[0] for case in CASES])
def test_same_decision_as_datatrove(rule: str, failing: str, passing: str) -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import FineWebQualityFilter

    theirs = FineWebQualityFilter()
    expected = [theirs.filter(Document(text=text, id="x")) for text in (failing, passing)]
    assert expected == [(False, rule), True]


def test_removed_value_is_the_measured_ratio() -> None:
    _, removed, _ = run(FineWebQuality(), documents(page(1, 8)))
    assert removed["d0"] == ("line_punct_ratio", pytest.approx(1 / 9))


def test_options() -> None:
    assert reasons(FineWebQuality(FineWebQualityConfig(line_punct_exclude_zero=True)), page(0, 5)) == [None]
    assert reasons(FineWebQuality(FineWebQualityConfig(stop_chars="3")), page(0, 4)) == [None]
    with pytest.raises(ValueError, match="stop_chars"):
        FineWebQualityConfig(stop_chars="")
