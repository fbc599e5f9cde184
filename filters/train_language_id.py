"""Trains a small fastText language-ID model from documents whose language is known.

The language comes from a field of each document's metadata JSON, or from a typed column of that name
(the output of an earlier `language_id` run). Text is prepared exactly as the `language_id` stage
prepares it, training documents are cut into short pieces, and the model learns character n-grams, so
a few dozen documents per language give a usable model without downloading lid.176.
"""

import re
from collections import Counter
from dataclasses import dataclass

import orjson
import pyarrow as pa
from gristmill.filters import fasttext_model
from gristmill.filters.fasttext_training import (
    LabelScores,
    SupervisedTrainingConfig,
    read_labelled,
    train_and_hold_out,
)
from gristmill.pipeline.errors import UserError


@dataclass(kw_only=True)
class TrainLanguageIdConfig(SupervisedTrainingConfig):
    inputs: list[str]
    """Files or globs of documents with a known language."""
    label_field: str = "lang"
    """Metadata field (or typed column) holding the language; documents without it are skipped."""
    min_docs_per_language: int = 20
    """Languages with fewer documents are left out of the model."""
    report_languages: int = 10
    """How many of the largest languages get precision and recall in the report."""
    dim: int = 16
    lr: float = 0.5
    minn: int = 2
    maxn: int = 4
    min_count: int = 3
    bucket: int = 50_000
    chunk_chars: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.label_field:
            raise ValueError("label_field must name a metadata field, got ''")
        for name in ("min_docs_per_language", "report_languages"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class LanguageIdReport:
    languages: dict[str, int]
    """Documents of every language in the model, largest first."""
    left_out: dict[str, int]
    """Documents of the languages below min_docs_per_language."""
    unlabelled: int
    unreadable: int
    held_out: int
    accuracy: float | None
    """Share of held-out documents given their language; None when none were held out."""
    per_language: list[LabelScores]
    """Held-out precision and recall of the largest languages."""


def train_language_id(config: TrainLanguageIdConfig) -> LanguageIdReport:
    """Trains, saves the model to `config.output`, and reports how it does on the held-out documents."""
    documents = read_labelled(
        config.inputs,
        normalize=fasttext_model.one_line,
        labels_of=lambda batch: _languages(batch, config.label_field),
        option="train_langid",
    )
    counts = Counter(label for label, _ in documents.examples)
    if not counts:
        raise UserError(
            f"no documents with a {config.label_field!r} label in {', '.join(config.inputs)} "
            f"({documents.unlabelled} documents without one)"
        )
    kept = {label: n for label, n in counts.most_common() if n >= config.min_docs_per_language}
    if not kept:
        raise UserError(
            f"no language has {config.min_docs_per_language} documents (the largest, "
            f"{fasttext_model.label_name(counts.most_common(1)[0][0])}, has {counts.most_common(1)[0][1]}); "
            "lower --min-docs-per-language"
        )
    held_out = train_and_hold_out([e for e in documents.examples if e[0] in kept], config)
    return LanguageIdReport(
        languages={fasttext_model.label_name(label): n for label, n in kept.items()},
        left_out={fasttext_model.label_name(label): n for label, n in counts.items() if label not in kept},
        unlabelled=documents.unlabelled,
        unreadable=documents.unreadable,
        held_out=len(held_out.truth),
        accuracy=held_out.accuracy,
        per_language=[held_out.scores(label) for label in list(kept)[: config.report_languages]],
    )


def _languages(batch: pa.RecordBatch, field: str) -> list[str | None]:
    """The language of every row: the typed column `field` if the batch has one, else the metadata field."""
    if field in batch.schema.names:
        values = batch.column(field).cast(pa.string()).to_pylist()
    else:
        values = [_metadata_field(metadata, field) for metadata in batch.column("metadata").to_pylist()]
    return [value if isinstance(value, str) and re.fullmatch(r"\S+", value) else None for value in values]


def _metadata_field(metadata: str | None, field: str) -> object:
    """The top-level `field` of a metadata JSON string; None when absent, unreadable or not an object."""
    try:
        record = orjson.loads(metadata) if metadata else {}
    except orjson.JSONDecodeError:
        return None
    return record.get(field) if isinstance(record, dict) else None
