"""The report tests' run: random documents with planted duplicates, markup and an unreadable line, through
language tagging, a length filter, exact dedup and tokenization."""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from gristmill.pipeline.recipe import load_recipe
from gristmill.pipeline.run import run_recipe
from gristmill.tokenizer.train_bpe import BpeTrainingConfig, train_bpe

HERE = Path(__file__).parent
PLANTED_SCRIPT = '<script>window.__pwned = 1; document.title = "pwned";</script>'
PLANTED_MARKUP = '</pre><img src="x" onerror="window.__pwned = 2"><b>bold?</b>'
MIN_CHARS = 80
MIN_LANG_SCORE = 0.3
WORDS = "grist mill stone wheat flour sack river wheel miller grain chaff sieve hopper".split()


@dataclass
class ReportRun:
    out: Path
    duplicate_groups: list[int]
    """Sizes of the planted groups of identical documents (original included)."""


def _document(rng: np.random.Generator, index: int) -> dict:
    words = int(np.exp(rng.uniform(np.log(2), np.log(3000))))
    text = f"doc {index}: " + " ".join(rng.choice(WORDS, size=words))
    lang = str(rng.choice(["en", "de", "fr", "ja"], p=[0.6, 0.2, 0.15, 0.05]))
    return {"id": f"d{index:04d}", "text": text, "lang": lang, "lang_score": float(rng.uniform(0, 1))}


def write_corpus(root: Path, rng: np.random.Generator) -> list[int]:
    """Two JSONL files; returns the planted duplicate group sizes. Markup documents come first and are
    short, so the length filter removes them and they are the first examples of its rule."""
    documents = [
        {"id": "planted-script", "text": PLANTED_SCRIPT, "source": "<i>src</i>"},
        {"id": "planted-markup", "text": PLANTED_MARKUP},
    ]
    for planted in documents:
        planted.update(lang="en", lang_score=1.0)
    documents += [_document(rng, index) for index in range(240)]
    groups = []
    for group in range(int(rng.integers(3, 7))):
        original = {**_document(rng, 1000 + group), "lang_score": 1.0}
        original["text"] += " " + "wheat " * 20
        size = int(rng.integers(2, 6))
        documents += [{**original, "id": f"dup{group}-{copy}"} for copy in range(size)]
        groups.append(size)
    order = np.concatenate([[0, 1], 2 + rng.permutation(len(documents) - 2)])
    lines = [json.dumps(documents[i]) for i in order]
    lines.insert(len(lines) // 3, '{"id": "broken", "text": ')
    root.mkdir(parents=True)
    half = len(lines) // 2
    (root / "a.jsonl").write_text("\n".join(lines[:half]) + "\n")
    (root / "b.jsonl").write_text("\n".join(lines[half:]) + "\n")
    return groups


def make_report_run(root: Path, seed: int) -> ReportRun:
    """Writes the corpus and a tokenizer under `root` and runs the recipe into `root/out`."""
    groups = write_corpus(root / "corpus", np.random.default_rng(seed))
    tokenizer = train_bpe([str(root / "corpus")], root / "tokenizer.json", BpeTrainingConfig(vocab_size=300))
    stages = [
        {"type": "report_stages:TagLanguage", "min_score": MIN_LANG_SCORE},
        {"type": "stages_for_tests:MinChars", "min_chars": MIN_CHARS},
        {"type": "exact_dedup", "partitions": 2},
        {"type": "tokenize", "tokenizer": str(tokenizer), "validation_fraction": 0.1},
    ]
    lines = ["[input]", f"paths = [{json.dumps(str(root / 'corpus' / '*.jsonl'))}]", "batch_size = 32",
             "[output]", f"path = {json.dumps(str(root / 'out'))}", "[executor]", "workers = 1"]
    for stage in stages:
        lines += ["[[stages]]", *(f"{key} = {json.dumps(value)}" for key, value in stage.items())]
    recipe = root / "recipe.toml"
    recipe.write_text("\n".join(lines) + "\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(HERE))
        patch.syspath_prepend(str(HERE.parent))
        run_recipe(load_recipe(recipe, {}))
    return ReportRun(out=root / "out", duplicate_groups=groups)
