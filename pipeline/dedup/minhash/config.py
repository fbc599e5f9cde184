"""Options of the MinHash-LSH dedup (defaults follow FineWeb: 5-word shingles, 14 bands of 8 rows)."""

from dataclasses import dataclass, field
from typing import Literal

from gristmill.pipeline.dedup.normalize import TextNormalization
from gristmill.pipeline.dedup.options import ShuffleOptions


def _minhash_normalization() -> TextNormalization:
    return TextNormalization(punctuation=True, digits=True)


@dataclass(kw_only=True)
class MinHashConfig(ShuffleOptions):
    shingle: Literal["words", "chars"] = "words"
    """Shingles are n-grams of words (split on whitespace) or of characters."""
    ngram: int = 5
    bands: int = 14
    rows: int = 8
    """Hashes per band; documents sharing all `rows` hashes of any band are candidates
    (similarity threshold about (1 / bands) ** (1 / rows), 0.72 for 14 x 8)."""
    seed: int = 1
    """Seeds the permutations; a corpus deduped in several runs must use one seed."""
    normalize: TextNormalization = field(default_factory=_minhash_normalization)
    split_cjk: bool = True
    """Each Han, Hiragana, Katakana, Hangul or Thai character counts as a word (those scripts use no spaces)."""
    verify: bool = False
    """Compute the true Jaccard similarity of each candidate pair and drop those below `jaccard_threshold`."""
    jaccard_threshold: float = 0.8
    keep_highest: str | None = None
    """A numeric column (e.g. "quality"): each cluster keeps its highest-scoring document instead of the earliest."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("ngram", "bands", "rows"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 < self.jaccard_threshold <= 1.0:
            raise ValueError(f"jaccard_threshold must be in (0, 1], got {self.jaccard_threshold}")

    @property
    def permutations(self) -> int:
        return self.bands * self.rows
