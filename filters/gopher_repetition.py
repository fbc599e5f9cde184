"""Gopher repetition rules (Rae et al. 2021, table A1): repeated lines, paragraphs and word n-grams.

Line and paragraph duplicates are counted for the whole batch at once (`Parts.duplicates`). The n-gram
rules work on integer word ids per document: an n-gram is a rolling hash of n ids, so no n-gram string
is ever built and a giant document costs linear time and a few arrays of its word count.
"""

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from gristmill.filters import text_stats
from gristmill.filters.rule_chain import RuleChain
from gristmill.pipeline.stage import Filter, Verdict

HASH_BASE = np.uint64(0x9E3779B97F4A7C15)


@dataclass(kw_only=True)
class GopherRepetitionConfig:
    """Fractions above which a document is removed; None switches a rule off."""

    dup_line_frac: float | None = 0.3
    """Lines equal to an earlier line, as a fraction of lines."""
    dup_para_frac: float | None = 0.3
    dup_line_char_frac: float | None = 0.2
    """Characters in repeated lines, as a fraction of all characters."""
    dup_para_char_frac: float | None = 0.2
    top_n_grams: list[tuple[int, float]] = field(default_factory=lambda: [(2, 0.2), (3, 0.18), (4, 0.16)])
    """(n, fraction): characters covered by the most frequent n-gram."""
    dup_n_grams: list[tuple[int, float]] = field(
        default_factory=lambda: [(5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)]
    )
    """(n, fraction): characters covered by repeated n-grams."""

    def __post_init__(self) -> None:
        for n, _ in [*self.top_n_grams, *self.dup_n_grams]:
            if n < 1:
                raise ValueError(f"n-gram sizes must be >= 1, got {n} in top_n_grams/dup_n_grams")


class GopherRepetition(Filter):
    name = "gopher_repetition"
    Config = GopherRepetitionConfig

    def judge(self, batch: pa.RecordBatch) -> Verdict:
        cfg: GopherRepetitionConfig = self.config
        texts = batch.column("text")
        chars = text_stats.char_counts(texts)
        rules = RuleChain(batch.num_rows)
        rules.check("empty", chars == 0, 0.0)

        paragraphs = text_stats.split(text_stats.strip(texts), r"\n\n+")
        self._check_duplicates(rules, paragraphs, chars, "para", cfg.dup_para_frac, cfg.dup_para_char_frac)
        lines = text_stats.split(texts, r"\n+")
        self._check_duplicates(rules, lines, chars, "line", cfg.dup_line_frac, cfg.dup_line_char_frac)

        words = text_stats.words(texts)
        word_ids = pc.dictionary_encode(words.values).indices.to_numpy(zero_copy_only=False).astype(np.uint64)
        word_lengths = words.lengths()
        bounds = np.searchsorted(words.parents, np.arange(batch.num_rows + 1))
        reasons = np.full(batch.num_rows, None, dtype=object)
        fractions = np.zeros(batch.num_rows)
        for row in np.flatnonzero(rules.undecided):
            ids, lengths = word_ids[bounds[row] : bounds[row + 1]], word_lengths[bounds[row] : bounds[row + 1]]
            reasons[row], fractions[row] = _first_ngram_failure(ids, lengths, int(chars[row]), cfg)
        for reason in dict.fromkeys(r for r in reasons if r is not None):
            rules.check(reason, reasons == reason, fractions)
        return rules.verdict()

    @staticmethod
    def _check_duplicates(
        rules: RuleChain, parts: text_stats.Parts, chars: np.ndarray, kind: str, max_frac: float | None,
        max_char_frac: float | None,
    ) -> None:
        repeated, repeated_chars = parts.duplicates()
        if max_frac:
            frac = text_stats.safe_ratio(repeated, parts.count())
            rules.check(f"dup_{kind}_frac", frac > max_frac, frac)
        if max_char_frac:
            char_frac = text_stats.safe_ratio(repeated_chars, chars)
            rules.check(f"dup_{kind}_char_frac", char_frac > max_char_frac, char_frac)


def _first_ngram_failure(
    ids: np.ndarray, lengths: np.ndarray, chars: int, cfg: GopherRepetitionConfig
) -> tuple[str | None, float]:
    """The first n-gram rule one document fails, with its measured fraction; (None, 0) if none."""
    span_chars = np.concatenate([[0], np.cumsum(lengths)])
    for n, max_frac in cfg.top_n_grams:
        if len(ids) < n:
            continue
        hashes = _ngram_hashes(ids, n)
        _, first, counts = np.unique(hashes, return_index=True, return_counts=True)
        most = counts == counts.max()
        start = first[most].min()
        joined_length = span_chars[start + n] - span_chars[start] + n - 1
        fraction = joined_length * counts.max() / chars
        if fraction > max_frac:
            return f"top_{n}_gram", fraction
    for n, max_frac in cfg.dup_n_grams:
        if len(ids) < n:
            continue
        fraction = _repeated_ngram_chars(_ngram_hashes(ids, n), span_chars, n) / chars
        if fraction > max_frac:
            return f"dup_{n}_gram", fraction
    return None, 0.0


def _ngram_hashes(ids: np.ndarray, n: int) -> np.ndarray:
    """A 64-bit polynomial hash of every window of `n` word ids (wrapping arithmetic is intended)."""
    count = len(ids) - n + 1
    hashes = np.zeros(count, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for offset in range(n):
            hashes = hashes * HASH_BASE + ids[offset : offset + count] + np.uint64(1)
    return hashes


def _repeated_ngram_chars(hashes: np.ndarray, span_chars: np.ndarray, n: int) -> int:
    """Characters of n-grams that repeat an earlier one, scanning left to right and jumping past each repeat.

    Only windows whose n-gram occurs more than once can be a repeat or matter to one, so the scan
    visits those alone: linear in the number of repeated windows, not in the document.
    """
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    candidates = np.flatnonzero(counts[inverse] > 1)
    seen: set[int] = set()
    repeated_chars, next_free = 0, 0
    for position, gram in zip(candidates.tolist(), inverse[candidates].tolist()):
        if position < next_free:
            continue
        if gram in seen:
            repeated_chars += int(span_chars[position + n] - span_chars[position])
            next_free = position + n
        else:
            seen.add(gram)
    return repeated_chars
