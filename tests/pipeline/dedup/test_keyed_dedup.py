"""Exact and URL dedup against plain-Python references on random corpora; what every dedup stage shares."""

import json
import random
import re
import unicodedata
from pathlib import Path

import pytest

from gristmill.pipeline.config import build_config
from gristmill.pipeline.dedup.exact import ExactDedup, ExactDedupConfig
from gristmill.pipeline.dedup.lines import LineDedup
from gristmill.pipeline.dedup.minhash.stage import MinHashDedup
from gristmill.pipeline.dedup.normalize import TextNormalization
from gristmill.pipeline.dedup.url import UrlDedup, UrlDedupConfig
from gristmill.pipeline.errors import UserError
from gristmill.pipeline.stage import GlobalStage

from dedup_helpers import kept_ids, random_text, removed_rows, run_stage, write_shards


def normalized(text: str, options: TextNormalization) -> str:
    if options.unicode:
        text = unicodedata.normalize("NFKC", text)
    if options.lowercase:
        text = text.lower()
    if options.punctuation:
        text = re.sub(r"[^\w\s]|_", " ", text)
    if options.digits:
        text = re.sub(r"\d", "0", text)
    if options.whitespace:
        text = " ".join(text.split())
    return text


def variant(rng: random.Random, text: str) -> str:
    """The same words with other case, spacing, punctuation or digits."""
    words = text.split()
    change = rng.choice(["case", "space", "punct", "digit", "none"])
    if change == "case":
        words = [w.upper() if rng.random() < 0.3 else w for w in words]
    elif change == "punct":
        words = [w + "," if rng.random() < 0.3 else w for w in words]
    elif change == "digit":
        words = [w + str(rng.randrange(10)) if rng.random() < 0.1 else w for w in words]
    separator = "  \n" if change == "space" else " "
    return separator.join(words)


@pytest.mark.parametrize(
    "options",
    [TextNormalization(), TextNormalization(lowercase=False, whitespace=False), TextNormalization(punctuation=True, digits=True)],
    ids=["default", "strict", "loose"],
)
def test_exact_dedup_keeps_the_first_of_each_normalized_text(tmp_path: Path, options: TextNormalization) -> None:
    rng = random.Random()
    bases = [random_text(rng, rng.randrange(1, 30)) + " 42" for _ in range(60)]
    docs = [{"id": f"d{i}", "text": variant(rng, rng.choice(bases))} for i in range(300)]
    shards = [docs[i : i + 70] for i in range(0, 300, 70)]
    outputs = run_stage(ExactDedup(ExactDedupConfig(normalize=options, partitions=3)), write_shards(tmp_path / "in", shards), tmp_path / "x")
    first_of: dict[str, str] = {}
    for doc in docs:
        first_of.setdefault(normalized(doc["text"], options), doc["id"])
    assert kept_ids(outputs) == sorted(first_of.values())
    removed = removed_rows(tmp_path / "x")
    assert len(removed) == 300 - len(first_of) and {row["reason"] for row in removed} <= {"exact_duplicate"}


def test_url_dedup_normalizes_urls_and_keeps_the_longest(tmp_path: Path) -> None:
    spellings = ["https://www.Site.org/a/", "http://site.org/a", "site.org/a/?utm_source=x", "https://site.org:443/a#top"]
    docs = [
        {"id": f"a{i}", "text": "x" * (10 + 7 * i % 5), "metadata": json.dumps({"url": url})}
        for i, url in enumerate(spellings)
    ]
    docs += [
        {"id": "other", "text": "y", "metadata": json.dumps({"url": "https://site.org/b"})},
        {"id": "query", "text": "z", "metadata": json.dumps({"url": "https://site.org/a?page=2"})},
        {"id": "no-url", "text": "w", "metadata": "{}"},
        {"id": "no-url-2", "text": "w", "metadata": json.dumps({"url": ""})},
    ]
    inputs = write_shards(tmp_path / "in", [docs[:3], docs[3:]])
    longest = max(docs[:4], key=lambda d: (len(d["text"]), -int(d["id"][1:])))["id"]
    outputs = run_stage(UrlDedup(UrlDedupConfig()), inputs, tmp_path / "u")
    assert kept_ids(outputs) == sorted([longest, "other", "query", "no-url", "no-url-2"])


def test_url_dedup_keep_newest_uses_the_date_field(tmp_path: Path) -> None:
    dates = ["2021-05-01", "2023-01-01T10:00:00Z", None, "not a date"]
    docs = [
        {"id": f"v{i}", "text": "t", "metadata": json.dumps({"link": "https://site.org/p", "crawled": date})}
        for i, date in enumerate(dates)
    ]
    config = UrlDedupConfig(field="link", keep="newest", date_field="crawled")
    outputs = run_stage(UrlDedup(config), write_shards(tmp_path / "in", [docs]), tmp_path / "u")
    assert kept_ids(outputs) == ["v1"]
    assert {row["id"] for row in removed_rows(tmp_path / "u")} == {"v0", "v2", "v3"}


def test_url_dedup_keeps_documents_with_unreadable_metadata(tmp_path: Path) -> None:
    docs = [
        {"id": "a", "text": "one", "metadata": json.dumps({"url": "https://site.org/x"})},
        {"id": "b", "text": "two", "metadata": "not json {"},
        {"id": "c", "text": "three", "metadata": "[1, 2]"},
        {"id": "d", "text": "four", "metadata": json.dumps({"url": "site.org/x/"})},
    ]
    outputs = run_stage(UrlDedup(UrlDedupConfig()), write_shards(tmp_path / "in", [docs]), tmp_path / "u")
    assert kept_ids(outputs) == ["b", "c", "d"]


@pytest.mark.parametrize("stage", [ExactDedup(), UrlDedup(), LineDedup(), MinHashDedup()], ids=lambda s: s.name)
def test_no_input_shards_give_no_output_and_zero_stats(tmp_path: Path, stage: GlobalStage) -> None:
    assert run_stage(stage, [], tmp_path / "stage") == []
    stats = json.loads((tmp_path / "stage" / "stats.json").read_text())
    assert stats["docs_in"] == 0 and stats["docs_out"] == 0


def test_recipe_options_fill_nested_normalization_and_reject_unknown_keys() -> None:
    config = build_config(ExactDedupConfig, {"normalize": {"lowercase": False, "digits": True}})
    assert config.normalize == TextNormalization(lowercase=False, digits=True)
    with pytest.raises(UserError, match="normalize.lower"):
        build_config(ExactDedupConfig, {"normalize": {"lower": False}})
