"""A stage used only by the report tests: adds typed `lang` / `lang_score` columns, as a language-ID stage
would, from each document's metadata, and removes documents whose score is below a threshold."""

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gristmill.pipeline.stage import ShardContext, Stage


@dataclass(kw_only=True)
class TagLanguageConfig:
    min_score: float = 0.5


class TagLanguage(Stage):
    name = "tag_language"
    Config = TagLanguageConfig

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        metadata = [json.loads(text) for text in batch.column("metadata").to_pylist()]
        scores = pa.array([m["lang_score"] for m in metadata], pa.float64())
        tagged = batch.append_column("lang", pa.array([m["lang"] for m in metadata], pa.string()))
        tagged = tagged.append_column("lang_score", scores)
        keep = pa.array(np.asarray(scores) >= self.config.min_score)
        drop = pa.compute.invert(keep)
        ctx.remove(tagged.filter(drop), "low_lang_score", scores.filter(drop))
        return tagged.filter(keep)
