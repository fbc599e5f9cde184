"""Fixtures of the filter tests: the sample corpus and a language-ID model trained on it."""

import json
from pathlib import Path

import pyarrow as pa
import pytest
from filter_helpers import SAMPLE
from gristmill.filters.train_language_id import TrainLanguageIdConfig, train_language_id
from gristmill.pipeline.readers import (
    InputConfig,
    ReadErrors,
    expand_paths,
    read_documents,
)
from gristmill.pipeline.stats import StageStats

LID_LANGUAGES = ("en", "de", "fr", "es", "it", "pl", "ru", "ja")


@pytest.fixture(scope="session")
def sample_documents() -> pa.Table:
    """Every document of data/sample (about 3,000), as one table."""
    batches = []
    for path in expand_paths([str(SAMPLE / "*")]):
        batches += read_documents(path, InputConfig(), ReadErrors(StageStats("read"), None))
    return pa.Table.from_batches(batches)


@pytest.fixture(scope="session")
def lid_split(sample_documents: pa.Table) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(language, text) pairs of the sample corpus in LID_LANGUAGES, split into train and held-out halves."""
    per_language: dict[str, list[str]] = {lang: [] for lang in LID_LANGUAGES}
    for text, metadata in zip(sample_documents.column("text").to_pylist(), sample_documents.column("metadata").to_pylist()):
        info = json.loads(metadata)
        lang = info.get("lang")
        if lang in per_language and info.get("kind") in ("prose", "non_english") and len(per_language[lang]) < 56:
            per_language[lang].append(text)
    pairs = [(lang, text) for lang, texts in per_language.items() for text in texts]
    return pairs[0::2], pairs[1::2]


@pytest.fixture(scope="session")
def lid_train_file(tmp_path_factory: pytest.TempPathFactory, lid_split) -> Path:
    """The training half of `lid_split` as JSONL, each document's language in its `lang` field."""
    path = tmp_path_factory.mktemp("lid") / "train.jsonl"
    lines = [json.dumps({"text": text, "lang": lang}) + "\n" for lang, text in lid_split[0]]
    path.write_text("".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def lid_model(lid_train_file: Path) -> Path:
    """A small language-ID model that `train_language_id` makes from `lid_train_file` (under a second)."""
    path = lid_train_file.with_name("lid.bin")
    train_language_id(TrainLanguageIdConfig(inputs=[str(lid_train_file)], output=path, holdout_fraction=0.0))
    return path
