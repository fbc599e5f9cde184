"""Trains a fastText quality classifier from positive and negative documents (DCLM recipe).

Documents are read with the pipeline readers (jsonl, parquet, ...), normalized as the scoring stage
will normalize them, shuffled with a seed, split into train and held-out parts, and fed to fastText's
supervised trainer with word bigrams. The held-out precision, recall and F1 of the positive label say
how far to trust the model before it filters a corpus.
"""

import random
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gristmill.filters import fasttext_model
from gristmill.pipeline.errors import UserError
from gristmill.pipeline.readers import (
    InputConfig,
    ReadErrors,
    expand_paths,
    read_documents,
)
from gristmill.pipeline.stats import StageStats


@dataclass(kw_only=True)
class TrainClassifierConfig:
    positive: list[str]
    """Files or globs of good documents."""
    negative: list[str]
    """Files or globs of bad documents."""
    output: Path
    """Where the model is saved (.bin)."""
    positive_label: str = "hq"
    negative_label: str = "lq"
    epochs: int = 5
    dim: int = 256
    lr: float = 0.1
    word_ngrams: int = 2
    min_count: int = 1
    holdout_fraction: float = 0.1
    seed: int = 0
    threads: int = 1
    """fastText threads; 1 gives the same model on every run."""

    def __post_init__(self) -> None:
        for name in ("epochs", "dim", "word_ngrams", "min_count", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if fasttext_model.labelled(self.positive_label) == fasttext_model.labelled(self.negative_label):
            raise ValueError(f"positive_label and negative_label are both {self.positive_label!r}")


@dataclass
class HeldOutScores:
    """Precision, recall and F1 of the positive label on the held-out documents."""

    examples: int
    precision: float
    recall: float
    f1: float


def train_classifier(config: TrainClassifierConfig) -> HeldOutScores:
    """Trains, saves the model to `config.output`, and returns its held-out scores."""
    import fasttext

    positive, negative = fasttext_model.labelled(config.positive_label), fasttext_model.labelled(config.negative_label)
    examples = [(positive, text) for text in _read_texts(config.positive, "positive")]
    examples += [(negative, text) for text in _read_texts(config.negative, "negative")]
    random.Random(config.seed).shuffle(examples)
    held_out_count = int(len(examples) * config.holdout_fraction)
    held_out, train = examples[:held_out_count], examples[held_out_count:]
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("".join(f"{label} {text}\n" for label, text in train), encoding="utf-8")
        model = fasttext.train_supervised(
            input=str(train_file),
            epoch=config.epochs,
            dim=config.dim,
            lr=config.lr,
            wordNgrams=config.word_ngrams,
            minCount=config.min_count,
            thread=config.threads,
            seed=config.seed,
            verbose=0,
        )
    config.output.parent.mkdir(parents=True, exist_ok=True)
    model.save_model(str(config.output))
    predicted = model.predict([text for _, text in held_out], k=1)[0] if held_out else []
    return _scores([label for label, _ in held_out], [top[0] for top in predicted], positive)


def _read_texts(patterns: list[str], which: str) -> list[str]:
    """The normalized texts of every document in `patterns`; none at all is a UserError."""
    texts: list[str] = []
    for path in expand_paths(patterns):
        for batch in read_documents(path, InputConfig(), ReadErrors(StageStats(which), None)):
            texts += fasttext_model.normalize(batch.column("text"))
    texts = [text for text in texts if text.strip()]
    if not texts:
        raise UserError(f"--{which}: no documents with text in {', '.join(patterns)}")
    return texts


def _scores(truth: list[str], predicted: list[str], positive: str) -> HeldOutScores:
    true_pos = sum(t == positive and p == positive for t, p in zip(truth, predicted))
    predicted_pos = sum(p == positive for p in predicted)
    actual_pos = sum(t == positive for t in truth)
    precision = true_pos / predicted_pos if predicted_pos else 0.0
    recall = true_pos / actual_pos if actual_pos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return HeldOutScores(len(truth), precision, recall, f1)
