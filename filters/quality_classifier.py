"""Scores documents with a fastText quality classifier (`gristmill filter train-classifier`) and keeps the best.

Adds a `quality` column: the model's probability of the positive label. Keeps documents scoring at
least `min_score`, or the `top_fraction` best of each batch (a per-batch quantile: shards stay
independent, and with thousands of documents a batch is a close sample of the corpus).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from gristmill.filters import fasttext_model
from gristmill.filters.rule_chain import RuleChain
from gristmill.pipeline.stage import ShardContext, Stage, apply_verdict


@dataclass(kw_only=True)
class QualityClassifierConfig:
    model_path: Path
    """A supervised fastText model, e.g. the output of `gristmill filter train-classifier`."""
    positive_label: str = "hq"
    """The label meaning "good document" (with or without the __label__ prefix)."""
    min_score: float | None = 0.5
    """Keep documents whose quality is at least this (set it to None when using top_fraction)."""
    top_fraction: float | None = None
    """Keep this fraction of each batch, best first, instead of a fixed min_score."""

    def __post_init__(self) -> None:
        fasttext_model.check_model_path(self.model_path, "model_path")
        fasttext_model.labelled(self.positive_label)
        if (self.min_score is None) == (self.top_fraction is None):
            raise ValueError("set exactly one of min_score and top_fraction")
        if self.top_fraction is not None and not 0.0 < self.top_fraction <= 1.0:
            raise ValueError(f"top_fraction must be in (0, 1], got {self.top_fraction}")


class QualityClassifier(Stage):
    name = "quality_classifier"
    Config = QualityClassifierConfig
    requires = ("fasttext",)

    def setup(self) -> None:
        self._model = fasttext_model.load_model(self.config.model_path)
        self._positive = fasttext_model.labelled(self.config.positive_label)
        if self._positive not in self._model.get_labels():
            raise ValueError(
                f"positive_label {self.config.positive_label!r} is not a label of {self.config.model_path} "
                f"(its labels: {', '.join(map(fasttext_model.label_name, self._model.get_labels()))})"
            )

    def scores(self, texts: pa.Array) -> np.ndarray:
        """Probability of the positive label for every text."""
        labels, probs = self._model.predict(fasttext_model.normalize(texts), k=-1)
        return np.array([dict(zip(names, p)).get(self._positive, 0.0) for names, p in zip(labels, probs)])

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        quality = self.scores(batch.column("text"))
        annotated = batch.append_column("quality", pa.array(quality, pa.float64()))
        rules = RuleChain(batch.num_rows)
        if self.config.top_fraction is not None:
            keep = max(1, round(self.config.top_fraction * batch.num_rows)) if batch.num_rows else 0
            ranked = np.argsort(-quality, kind="stable")
            below = np.ones(batch.num_rows, dtype=bool)
            below[ranked[:keep]] = False
            rules.check("below_top_fraction", below, quality)
        else:
            rules.check("low_quality", quality < self.config.min_score, quality)
        return apply_verdict(annotated, rules.verdict(), ctx)
