"""fastText language identification: adds `lang` and `lang_score`, keeps the chosen languages.

Users bring the model (fastText's lid.176.bin or lid.176.ftz) or train one on documents of known language
with `gristmill filter train-langid`; its path is configuration.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
from gristmill.filters import fasttext_model
from gristmill.filters.rule_chain import RuleChain
from gristmill.pipeline.stage import ShardContext, Stage, apply_verdict


@dataclass(kw_only=True)
class LanguageIdConfig:
    model_path: Path
    """A fastText language-ID model (lid.176.bin / lid.176.ftz, labels like __label__en)."""
    languages: list[str] = field(default_factory=lambda: ["en"])
    """Languages to keep (label names without __label__); empty: keep every language."""
    min_score: float = 0.65
    """Lowest probability of the predicted language for a document to be kept."""

    def __post_init__(self) -> None:
        fasttext_model.check_model_path(self.model_path, "model_path")
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1], got {self.min_score}")


class LanguageId(Stage):
    name = "language_id"
    Config = LanguageIdConfig
    requires = ("fasttext",)

    def setup(self) -> None:
        self._model = fasttext_model.load_model(self.config.model_path)

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        labels, scores = self._model.predict(fasttext_model.one_line(batch.column("text")), k=1)
        lang = np.array([fasttext_model.label_name(top[0]) if top else "" for top in labels], dtype=object)
        score = np.array([float(top[0]) if len(top) else 0.0 for top in scores])
        annotated = batch.append_column("lang", pa.array(lang, pa.string())).append_column(
            "lang_score", pa.array(score, pa.float64())
        )
        rules = RuleChain(batch.num_rows)
        if self.config.languages:
            other = ~np.isin(lang, self.config.languages)
            for language in np.unique(lang[other]):
                rules.check(f"language_{language or 'unknown'}", other & (lang == language), score)
        rules.check("low_language_score", score < self.config.min_score, score)
        return apply_verdict(annotated, rules.verdict(), ctx)
