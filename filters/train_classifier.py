"""Trains a fastText quality classifier from positive and negative documents (DCLM recipe).

Documents are normalized as the scoring stage will normalize them and fed to fastText's supervised
trainer with word bigrams (the shared plumbing is in `fasttext_training`). The held-out precision,
recall and F1 of the positive label say how far to trust the model before it filters a corpus.
"""

from dataclasses import dataclass

from gristmill.filters import fasttext_model
from gristmill.filters.fasttext_training import (
    Example,
    SupervisedTrainingConfig,
    read_labelled,
    train_and_hold_out,
)
from gristmill.pipeline.errors import UserError


@dataclass(kw_only=True)
class TrainClassifierConfig(SupervisedTrainingConfig):
    positive: list[str]
    """Files or globs of good documents."""
    negative: list[str]
    """Files or globs of bad documents."""
    positive_label: str = "hq"
    negative_label: str = "lq"
    dim: int = 256
    word_ngrams: int = 2

    def __post_init__(self) -> None:
        super().__post_init__()
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
    positive = fasttext_model.labelled(config.positive_label)
    examples = _read_examples(config.positive, "positive", positive)
    examples += _read_examples(config.negative, "negative", fasttext_model.labelled(config.negative_label))
    held_out = train_and_hold_out(examples, config)
    scores = held_out.scores(positive)
    return HeldOutScores(len(held_out.truth), scores.precision, scores.recall, scores.f1)


def _read_examples(patterns: list[str], which: str, label: str) -> list[Example]:
    """Every document in `patterns` with text, labelled `label`; none at all is a UserError."""
    documents = read_labelled(
        patterns, normalize=fasttext_model.normalize, labels_of=lambda batch: [label] * batch.num_rows, option=which
    )
    if not documents.examples:
        raise UserError(f"--{which}: no documents with text in {', '.join(patterns)}")
    return documents.examples
