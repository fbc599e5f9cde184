"""FineWeb's own quality rules (Penedo et al. 2024): line punctuation, short lines, repeated lines, lists.

Thresholds are FineWeb's published defaults. Lines are the non-blank pieces between `\\n`.
"""

from dataclasses import dataclass

import pyarrow as pa
from gristmill.filters import text_stats
from gristmill.filters.rule_chain import RuleChain
from gristmill.pipeline.stage import Filter, Verdict


@dataclass(kw_only=True)
class FineWebQualityConfig:
    line_punct_thr: float = 0.12
    """Fewest lines ending in a stop character, as a fraction of lines."""
    line_punct_exclude_zero: bool = False
    """Keep documents where no line at all ends in a stop character (the rule is then about mixed pages)."""
    stop_chars: str | None = None
    """Characters that end a sentence; None: every Unicode sentence terminal."""
    short_line_thr: float = 0.67
    """Most lines of at most `short_line_length` characters, as a fraction of lines."""
    short_line_length: int = 30
    char_duplicates_ratio: float = 0.01
    """Most characters in repeated lines, as a fraction of non-newline characters."""
    new_line_ratio: float = 0.3
    """Most newlines per word (lists and menus)."""

    def __post_init__(self) -> None:
        if self.stop_chars == "":
            raise ValueError("stop_chars must not be empty (use None for the Unicode sentence terminals)")
        if self.short_line_length < 0:
            raise ValueError(f"short_line_length must be >= 0, got {self.short_line_length}")


class FineWebQuality(Filter):
    name = "fineweb_quality"
    Config = FineWebQualityConfig

    def __init__(self, config: FineWebQualityConfig | None = None) -> None:
        super().__init__(config)
        stop_chars = self.config.stop_chars if self.config.stop_chars is not None else text_stats.sentence_terminals()
        self._ends_in_stop_char = text_stats.char_class(stop_chars) + r"\z"

    def judge(self, batch: pa.RecordBatch) -> Verdict:
        cfg: FineWebQualityConfig = self.config
        texts = batch.column("text")
        all_lines = text_stats.split(texts, "\n")
        lines = all_lines.select(text_stats.char_counts(text_stats.strip(all_lines.values)) > 0)
        n_lines = lines.count()
        rules = RuleChain(batch.num_rows)
        rules.check("empty", n_lines == 0, 0.0)

        punct = text_stats.safe_ratio(lines.count(text_stats.matches(lines.values, self._ends_in_stop_char)), n_lines)
        rules.check(
            "line_punct_ratio",
            (punct < cfg.line_punct_thr) & ~((punct == 0) & cfg.line_punct_exclude_zero),
            punct,
        )
        short = text_stats.safe_ratio(lines.count(lines.lengths() <= cfg.short_line_length), n_lines)
        rules.check("short_line_ratio", short > cfg.short_line_thr, short)

        newlines = text_stats.substring_counts(texts, "\n")
        repeated_chars = lines.duplicates()[1]
        dup = text_stats.safe_ratio(repeated_chars, text_stats.char_counts(texts) - newlines)
        rules.check("char_dup_ratio", dup > cfg.char_duplicates_ratio, dup)

        per_word = text_stats.safe_ratio(newlines, text_stats.words(texts).count())
        rules.check("list_ratio", per_word > cfg.new_line_ratio, per_word)
        return rules.verdict()
