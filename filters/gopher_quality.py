"""Gopher quality rules (Rae et al. 2021, "Scaling Language Models", appendix A1.1), vectorized.

Defaults are the published thresholds. Rule order and the meaning of each number follow datatrove's
`GopherQualityFilter`, so decisions can be compared document by document (bench/filters.py).
"""

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from gristmill.filters import text_stats
from gristmill.filters.rule_chain import RuleChain
from gristmill.pipeline.stage import Filter, Verdict

GOPHER_STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")


@dataclass(kw_only=True)
class GopherQualityConfig:
    """Every threshold may be set to None to switch its rule off."""

    min_doc_words: int | None = 50
    """Fewest words (not counting words made only of punctuation)."""
    max_doc_words: int | None = 100_000
    min_avg_word_length: float | None = 3
    max_avg_word_length: float | None = 10
    max_symbol_word_ratio: float | None = 0.1
    """Most `#` per word, and most ellipses (`...`, `…`) per word."""
    max_bullet_lines_ratio: float | None = 0.9
    """Most lines starting with `•` or `-`, as a fraction of lines."""
    max_ellipsis_lines_ratio: float | None = 0.3
    """Most lines ending with an ellipsis, as a fraction of lines."""
    min_alpha_words_ratio: float | None = 0.8
    """Fewest words holding at least one letter, as a fraction of words."""
    min_stop_words: int | None = 2
    """Fewest distinct stop words present."""
    stop_words: list[str] = field(default_factory=lambda: list(GOPHER_STOP_WORDS))

    def __post_init__(self) -> None:
        for name in ("min_doc_words", "max_doc_words", "min_stop_words"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"{name} must be >= 0 or None, got {value}")


class GopherQuality(Filter):
    name = "gopher_quality"
    Config = GopherQualityConfig

    def judge(self, batch: pa.RecordBatch) -> Verdict:
        cfg: GopherQualityConfig = self.config
        texts = batch.column("text")
        words = text_stats.words(texts)
        n_words = words.count()
        content = text_stats.matches(words.values, text_stats.NON_SYMBOL)
        n_content = words.count(content)
        avg_length = text_stats.safe_ratio(words.sum(np.where(content, words.lengths(), 0)), n_content)
        hashes = text_stats.substring_counts(texts, "#")
        ellipses = text_stats.substring_counts(texts, "...") + text_stats.substring_counts(texts, "…")
        lines = text_stats.splitlines(texts)
        bullet = text_stats.matches(lines.values, rf"^[{text_stats.PYTHON_WHITESPACE}]*[•-]")
        ending = text_stats.matches(lines.values, rf"(?:\.\.\.|…)[{text_stats.PYTHON_WHITESPACE}]*\z")
        alpha = text_stats.matches(words.values, r"\pL")
        stop_words = _distinct_present(words, cfg.stop_words)

        rules = RuleChain(batch.num_rows)
        if cfg.min_doc_words:
            rules.check("short_doc", n_content < cfg.min_doc_words, n_content)
        if cfg.max_doc_words:
            rules.check("long_doc", n_content > cfg.max_doc_words, n_content)
        if cfg.min_avg_word_length:
            rules.check("below_avg_word_length", avg_length < cfg.min_avg_word_length, avg_length)
        if cfg.max_avg_word_length:
            rules.check("above_avg_word_length", avg_length > cfg.max_avg_word_length, avg_length)
        if cfg.max_symbol_word_ratio:
            hash_ratio = text_stats.safe_ratio(hashes, n_words)
            rules.check("too_many_hashes", hash_ratio > cfg.max_symbol_word_ratio, hash_ratio)
            ellipsis_ratio = text_stats.safe_ratio(ellipses, n_words)
            rules.check("too_many_ellipses", ellipsis_ratio > cfg.max_symbol_word_ratio, ellipsis_ratio)
        n_lines = lines.count()
        if cfg.max_bullet_lines_ratio:
            bullet_ratio = text_stats.safe_ratio(lines.count(bullet), n_lines)
            rules.check("too_many_bullet_lines", bullet_ratio > cfg.max_bullet_lines_ratio, bullet_ratio)
        if cfg.max_ellipsis_lines_ratio:
            ending_ratio = text_stats.safe_ratio(lines.count(ending), n_lines)
            rules.check("too_many_ellipsis_lines", ending_ratio > cfg.max_ellipsis_lines_ratio, ending_ratio)
        if cfg.min_alpha_words_ratio:
            alpha_ratio = text_stats.safe_ratio(words.count(alpha), n_words)
            rules.check("few_alpha_words", alpha_ratio < cfg.min_alpha_words_ratio, alpha_ratio)
        if cfg.min_stop_words:
            rules.check("few_stop_words", stop_words < cfg.min_stop_words, stop_words)
        return rules.verdict()


def _distinct_present(words: text_stats.Parts, vocabulary: list[str]) -> np.ndarray:
    """Per row: how many distinct words of `vocabulary` occur (case-sensitive, whole words)."""
    index = pc.index_in(words.values, value_set=pa.array(vocabulary, words.values.type))
    found = index.is_valid().to_numpy(zero_copy_only=False)
    keys = words.parents[found].astype(np.int64) * len(vocabulary) + index.filter(index.is_valid()).to_numpy()
    return np.bincount(np.unique(keys) // max(len(vocabulary), 1), minlength=words.rows)
