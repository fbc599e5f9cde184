"""Line and sentence-span dedup against a plain-Python reference."""

import random
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gristmill.pipeline.dedup.lines import LineDedup, LineDedupConfig

from dedup_helpers import random_text, removed_rows, run_stage, write_shards


def reference_lines(texts: list[str], min_count: int, min_chars: int) -> list[str | None]:
    """Each text without its lines found in >= min_count documents (None when nothing is left)."""
    key = lambda line: " ".join(line.lower().split())
    counts = Counter(k for text in texts for k in {key(line) for line in text.split("\n") if len(key(line)) >= min_chars})
    frequent = {k for k, n in counts.items() if n >= min_count}
    result: list[str | None] = []
    for text in texts:
        lines = text.split("\n")
        kept = [line for line in lines if key(line) not in frequent]
        result.append(None if len(kept) < len(lines) and not "\n".join(kept).strip() else "\n".join(kept))
    return result


def test_frequent_lines_are_dropped_everywhere(tmp_path: Path) -> None:
    rng = random.Random()
    boilerplate = [random_text(rng, rng.randrange(2, 8)) for _ in range(6)] + ["ok", ""]
    texts = []
    for _ in range(200):
        lines = [random_text(rng, rng.randrange(1, 12)) for _ in range(rng.randrange(0, 4))]
        lines += [rng.choice(boilerplate).upper() if rng.random() < 0.5 else rng.choice(boilerplate) for _ in range(rng.randrange(0, 3))]
        rng.shuffle(lines)
        texts.append("\n".join(lines))
    docs = [{"id": f"d{i:03d}", "text": t} for i, t in enumerate(texts)]
    inputs = write_shards(tmp_path / "in", [docs[:90], docs[90:150], docs[150:]])
    config = LineDedupConfig(min_count=4, min_chars=5, partitions=3)
    outputs = run_stage(LineDedup(config), inputs, tmp_path / "l")
    expected = reference_lines(texts, 4, 5)
    found = {row["id"]: row["text"] for path in outputs for row in pq.read_table(path).to_pylist()}
    assert found == {f"d{i:03d}": text for i, text in enumerate(expected) if text is not None}
    assert {row["id"] for row in removed_rows(tmp_path / "l")} == {f"d{i:03d}" for i, t in enumerate(expected) if t is None}


def test_sentence_spans_drop_only_repeated_runs(tmp_path: Path) -> None:
    banner = "We use cookies. They make the site work. Accept them now."
    docs = [{"id": f"d{i}", "text": f"Story {i} begins here today. {banner} The end of {i} is near."} for i in range(6)]
    docs.append({"id": "partial", "text": "We use cookies. They make the site work. But this text goes on."})
    config = LineDedupConfig(unit="sentence", span=3, min_count=5, min_chars=10)
    outputs = run_stage(LineDedup(config), write_shards(tmp_path / "in", [docs]), tmp_path / "s")
    found = {row["id"]: row["text"] for path in outputs for row in pq.read_table(path).to_pylist()}
    assert found["d2"] == "Story 2 begins here today. The end of 2 is near."
    assert found["partial"] == docs[-1]["text"]


@pytest.mark.parametrize("option,value", [("span", 0), ("min_count", 1), ("partitions", 0)])
def test_bad_options_name_the_field(option: str, value: int) -> None:
    with pytest.raises(ValueError, match=option):
        LineDedupConfig(**{option: value})
