"""C4 rules: kept lines, page drops with the line that caused them, and datatrove's decisions and text."""

from pathlib import Path

import pytest
from filter_helpers import documents, reasons, run
from gristmill.filters.c4 import C4Quality, C4QualityConfig

GOOD = "The river runs past the old mill every spring."
PAGE = "\n".join([GOOD] * 5)

PAGES = {
    "five sentences": PAGE,
    "four sentences": "\n".join([GOOD] * 4),
    "two sentences on one line": "\n".join([GOOD + " It is cold.", GOOD, GOOD, GOOD]),
    "menu lines dropped": "Home | About | Contact\n" + PAGE + "\nRead more",
    "ellipsis line dropped": PAGE + "\nAnd then the story goes on and on...",
    "short lines dropped": "Go now.\n" + "\n".join([GOOD] * 4),
    "words counted across double spaces": "Go  now.\n" + "\n".join([GOOD] * 4),
    "javascript line dropped": "Please enable JavaScript to view this page.\n" + PAGE,
    "policy line dropped": PAGE + "\nThis site uses cookies to improve your visit.",
    "citation removed": "\n".join([GOOD + "[1]"] * 4 + ["See the notes [citation needed]."]),
    "lorem ipsum": PAGE + "\nLorem ipsum dolor sit amet, consectetur.",
    "lorem ipsum in a dropped line": PAGE + "\nlorem ipsum dolor sit amet",
    "curly bracket": "Call it as f(x) { return x; } now.\n" + PAGE,
    "curly bracket in a dropped line": "if (x) {\n" + PAGE,
    "long word": "\n".join([GOOD] * 4 + ["A " + "x" * 1001 + " word."]),
    "unicode": "\n".join(["Der Fluß fließt jeden Frühling an der Mühle vorbei."] * 5),
    "empty": "",
}


def test_decisions_and_cleaned_text_match_datatrove() -> None:
    from datatrove.data import Document
    from datatrove.pipeline.filters import C4QualityFilter

    kept, removed, _ = run(C4Quality(), documents(*PAGES.values()))
    kept_text = dict(zip(kept.column("id").to_pylist(), kept.column("text").to_pylist()))
    theirs = C4QualityFilter()
    for i, (name, text) in enumerate(PAGES.items()):
        doc = Document(text=text, id=name)
        result = theirs.filter(doc)
        if result is True:
            assert kept_text.get(f"d{i}") == doc.text, name
        else:
            assert removed[f"d{i}"][0] == result[1], name


def test_page_drops_name_the_rule_and_the_line() -> None:
    _, removed, stats = run(C4Quality(), documents(PAGES["lorem ipsum"], PAGES["curly bracket"], PAGES["four sentences"]))
    assert removed == {"d0": ("lorem_ipsum", 6.0), "d1": ("curly_bracket", 1.0), "d2": ("too_few_sentences", 4.0)}
    assert stats.removed == {"lorem_ipsum": 1, "curly_bracket": 1, "too_few_sentences": 1}


def test_switches_and_thresholds() -> None:
    assert reasons(C4Quality(C4QualityConfig(min_num_sentences=4)), PAGES["four sentences"]) == [None]
    assert reasons(C4Quality(C4QualityConfig(filter_curly_bracket=False)), PAGES["curly bracket"]) == [None]
    kept, _, _ = run(C4Quality(C4QualityConfig(filter_no_terminal_punct=False)), documents(PAGES["menu lines dropped"]))
    assert kept.column("text")[0].as_py().startswith("Home | About | Contact\n")


def test_bad_words_file(tmp_path: Path) -> None:
    words = tmp_path / "bad.txt"
    words.write_text("Darn\nheck it\n", encoding="utf-8")
    stage = C4Quality(C4QualityConfig(bad_words_file=words))
    assert reasons(stage, PAGE + "\nWell, darn.", PAGE + "\nThe darning needle.", PAGE + "\nOh heck it is late.") == [
        "bad_words", None, "bad_words"
    ]
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        C4QualityConfig(bad_words_file=tmp_path / "nowhere.txt")
