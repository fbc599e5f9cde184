"""Exact dedup: documents whose normalized text is byte-identical keep only the earliest copy."""

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.keyed import DocumentKeys, KeyedDedup
from gristmill.pipeline.dedup.normalize import TextNormalization, normalize_text
from gristmill.pipeline.dedup.options import ShuffleOptions
from gristmill.pipeline.dedup.string_hash import xxhash_strings


@dataclass(kw_only=True)
class ExactDedupConfig(ShuffleOptions):
    normalize: TextNormalization = field(default_factory=TextNormalization)
    """Differences to ignore (default: Unicode forms, case, whitespace)."""


class ExactDedup(KeyedDedup):
    name = "exact_dedup"
    Config = ExactDedupConfig
    reason = "exact_duplicate"

    def document_keys(self, batch: pa.RecordBatch) -> DocumentKeys:
        key = xxhash_strings(normalize_text(batch.column("text"), self.config.normalize))
        rows = batch.num_rows
        return DocumentKeys(key=key, valid=np.ones(rows, dtype=bool), priority=np.zeros(rows))
