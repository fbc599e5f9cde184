"""Supervised fastText training shared by the quality-classifier and language-ID trainers.

Both read documents with the pipeline readers, normalize them exactly as their scoring stage will,
shuffle them with a seed, hold a share out, train on the rest and judge the model on the held-out
documents. Only how a document gets its label and how its text is normalized differ.
"""

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
from gristmill.filters import fasttext_model
from gristmill.pipeline.readers import (
    InputConfig,
    ReadErrors,
    expand_paths,
    read_documents,
)
from gristmill.pipeline.stats import StageStats

Example = tuple[str, str]
"""(fastText label with its __label__ prefix, normalized one-line text)."""

Normalize = Callable[[pa.Array], list[str]]
LabelsOf = Callable[[pa.RecordBatch], list[str | None]]
"""The label name of every row of a batch; None for a document that has none."""


@dataclass(kw_only=True)
class SupervisedTrainingConfig:
    """fastText's supervised options (its defaults here); each trainer overrides what suits its task."""

    output: Path
    """Where the model is saved (.bin)."""
    epochs: int = 5
    dim: int = 100
    lr: float = 0.1
    word_ngrams: int = 1
    """Longest word n-gram used as a feature."""
    minn: int = 0
    """Shortest character n-gram of a word (0 with maxn 0: no character n-grams)."""
    maxn: int = 0
    min_count: int = 1
    """Words seen fewer times get no vector of their own (their character n-grams still count)."""
    bucket: int = 2_000_000
    """Hash buckets for n-grams: with dim, this sets the model's size."""
    chunk_chars: int = 0
    """Training documents are cut at spaces into examples of about this many characters; 0: whole documents."""
    holdout_fraction: float = 0.1
    seed: int = 0
    threads: int = 1
    """fastText threads; 1 gives the same model on every run."""

    def __post_init__(self) -> None:
        for name in ("epochs", "dim", "word_ngrams", "min_count", "bucket", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.minn <= self.maxn:
            raise ValueError(f"need 0 <= minn <= maxn, got minn {self.minn} and maxn {self.maxn}")
        if self.chunk_chars < 0:
            raise ValueError(f"chunk_chars must be >= 0, got {self.chunk_chars}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")


@dataclass
class LabelledDocuments:
    examples: list[Example]
    unlabelled: int
    """Documents with text but no label."""
    unreadable: int
    """Records the readers could not turn into documents."""


@dataclass
class LabelScores:
    """How the held-out documents of one label fared."""

    label: str
    support: int
    """Held-out documents that carry this label."""
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


@dataclass
class HeldOutPredictions:
    """The true and the predicted label of every held-out document."""

    truth: list[str]
    predicted: list[str]

    @property
    def accuracy(self) -> float | None:
        return sum(t == p for t, p in zip(self.truth, self.predicted)) / len(self.truth) if self.truth else None

    def scores(self, label: str) -> LabelScores:
        true_positive = sum(t == label and p == label for t, p in zip(self.truth, self.predicted))
        predicted = self.predicted.count(label)
        actual = self.truth.count(label)
        return LabelScores(
            label=fasttext_model.label_name(label),
            support=actual,
            precision=true_positive / predicted if predicted else 0.0,
            recall=true_positive / actual if actual else 0.0,
        )


def read_labelled(patterns: list[str], *, normalize: Normalize, labels_of: LabelsOf, option: str) -> LabelledDocuments:
    """Every document of `patterns` that has text and a label, normalized; `option` names the input in stats."""
    examples: list[Example] = []
    unlabelled = 0
    stats = StageStats(option)
    for path in expand_paths(patterns):
        for batch in read_documents(path, InputConfig(), ReadErrors(stats, None)):
            for label, text in zip(labels_of(batch), normalize(batch.column("text"))):
                if not text.strip():
                    continue
                if label is None:
                    unlabelled += 1
                else:
                    examples.append((fasttext_model.labelled(label), text))
    return LabelledDocuments(examples, unlabelled, sum(stats.errors.values()))


def train_and_hold_out(examples: list[Example], config: SupervisedTrainingConfig) -> HeldOutPredictions:
    """Shuffles with the seed, trains on all but the held-out share, saves the model and predicts the held-out."""
    import fasttext

    shuffled = list(examples)
    random.Random(config.seed).shuffle(shuffled)
    held_out_count = int(len(shuffled) * config.holdout_fraction)
    held_out, train = shuffled[:held_out_count], shuffled[held_out_count:]
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        with train_file.open("w", encoding="utf-8") as lines:
            for label, text in train:
                lines.writelines(f"{label} {piece}\n" for piece in chunks(text, config.chunk_chars))
        model = fasttext.train_supervised(
            input=str(train_file),
            epoch=config.epochs,
            dim=config.dim,
            lr=config.lr,
            wordNgrams=config.word_ngrams,
            minn=config.minn,
            maxn=config.maxn,
            minCount=config.min_count,
            bucket=config.bucket,
            thread=config.threads,
            seed=config.seed,
            verbose=0,
        )
    config.output.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(config.output))
    predicted = model.predict([text for _, text in held_out], k=1)[0] if held_out else []
    return HeldOutPredictions([label for label, _ in held_out], [top[0] if top else "" for top in predicted])


def chunks(text: str, size: int) -> list[str]:
    """`text` cut at spaces into pieces of at most `size` characters (a longer word is cut inside); 0: whole.

    Many short examples teach fastText more than a few long ones, whose update is spread over every word.
    """
    if size == 0:
        return [text]
    pieces = []
    start = 0
    while start < len(text):
        end = start + size
        if end < len(text):
            space = text.rfind(" ", start + 1, end + 1)
            end = space if space > start else end
        piece = text[start:end].strip()
        if piece:
            pieces.append(piece)
        start = end
    return pieces
