"""C4's cleaning rules (Raffel et al. 2020, section 2.2): keep good lines, drop bad pages.

Lines are judged one by one (too long a word, no terminal punctuation, too few words, "javascript",
cookie and terms-of-use notices are dropped); "lorem ipsum" or a curly bracket in a surviving line,
a listed bad word, or fewer than `min_num_sentences` sentences left drops the whole page. Kept pages
go on with only their kept lines, as in C4. All lines of a batch are judged at once. In `removed/`,
the value of a page drop is the number of the line that caused it, or the sentence count.

Sentences are counted by rule, where datatrove runs spaCy's sentencizer: a sentence ends at a run of
sentence terminals followed by a space and a word, unless a single letter stands before it ("e.g.",
"J."), and at a period between a lowercase and an uppercase letter ("typing.List", which spaCy splits).
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from gristmill.filters import text_stats
from gristmill.filters.rule_chain import RuleChain
from gristmill.pipeline.stage import ShardContext, Stage, apply_verdict

CITATION = r"\[\d*\]|\[edit\]|\[citation needed\]"
POLICY_PHRASES = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


@dataclass(kw_only=True)
class C4QualityConfig:
    remove_citations: bool = True
    """Delete Wikipedia-style citation marks ([1], [edit], [citation needed]) from lines."""
    filter_no_terminal_punct: bool = True
    """Drop lines that do not end in . ? ! " or ' (or that end in an ellipsis)."""
    min_num_sentences: int | None = 5
    """Fewest sentences in the kept lines of a page; None: no minimum."""
    min_words_per_line: int | None = 3
    max_word_length: int | None = 1000
    """Drop lines holding a longer word."""
    filter_lorem_ipsum: bool = True
    filter_javascript: bool = True
    filter_curly_bracket: bool = True
    filter_policy: bool = True
    policy_phrases: list[str] = field(default_factory=lambda: list(POLICY_PHRASES))
    """Lines containing one of these (lowercase) are dropped by the policy rule."""
    bad_words_file: Path | None = None
    """A list of bad words, one per line (e.g. the LDNOOBW list C4 used); a page holding one as a whole
    word is dropped. None: no bad-words rule (gristmill ships no such list)."""

    def __post_init__(self) -> None:
        if self.bad_words_file is not None and not Path(self.bad_words_file).is_file():
            raise FileNotFoundError(f"bad_words_file: no such file: {self.bad_words_file}")


class C4Quality(Stage):
    name = "c4_quality"
    Config = C4QualityConfig

    def __init__(self, config: C4QualityConfig | None = None) -> None:
        super().__init__(config)
        self._bad_words = _bad_words_pattern(self.config.bad_words_file) if self.config.bad_words_file else None
        end = rf"{text_stats.char_class(text_stats.sentence_terminals())}+[\pP]*\s+[\pP]*[^\s\pP]"
        self._sentence_ends = (end, r"\p{Ll}\.\p{Lu}")
        self._abbreviation_ends = rf"(?:^|[^\pL])\pL{end}"

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        cfg: C4QualityConfig = self.config
        texts = batch.column("text")
        rules = RuleChain(batch.num_rows)
        if self._bad_words is not None:
            rules.check("bad_words", text_stats.matches(pc.utf8_lower(texts), self._bad_words), np.nan)

        lines = text_stats.splitlines(texts)
        stripped = text_stats.strip(lines.values)
        cleaned = pc.replace_substring_regex(stripped, CITATION, "") if cfg.remove_citations else stripped
        lower = pc.utf8_lower(cleaned)
        line_words = text_stats.Parts.of(pc.utf8_split_whitespace(stripped)).nonempty()
        survives = np.ones(len(cleaned), dtype=bool)
        if cfg.max_word_length is not None:
            survives &= line_words.count(line_words.lengths() > cfg.max_word_length) == 0
        if cfg.filter_no_terminal_punct:
            survives &= text_stats.matches(cleaned, r"[.?!\"']\z") & ~text_stats.matches(cleaned, r"\.\.\.\z")
        if cfg.min_words_per_line is not None:
            survives &= line_words.count() >= cfg.min_words_per_line
        lorem_line = survives & cfg.filter_lorem_ipsum & text_stats.matches(lower, "lorem ipsum")
        survives &= ~lorem_line
        if cfg.filter_javascript:
            survives &= ~text_stats.matches(lower, "javascript")
        curly_line = survives & cfg.filter_curly_bracket & text_stats.matches(cleaned, r"\{")
        survives &= ~curly_line
        if cfg.filter_policy and cfg.policy_phrases:
            survives &= ~text_stats.matches(lower, "|".join(map(text_stats.re2_literal, cfg.policy_phrases)))

        first_drop = _first_per_row(lines.parents, lorem_line | curly_line, batch.num_rows)
        dropped = first_drop >= 0
        line_number = first_drop - np.searchsorted(lines.parents, np.arange(batch.num_rows)) + 1
        for reason, dropping_line in (("lorem_ipsum", lorem_line), ("curly_bracket", curly_line)):
            hit = dropped.copy()
            hit[dropped] = dropping_line[first_drop[dropped]]
            rules.check(reason, hit, line_number)
        if cfg.min_num_sentences is not None:
            sentences = lines.sum(np.where(survives, self._sentences(cleaned), 0))
            rules.check("too_few_sentences", sentences < cfg.min_num_sentences, sentences)

        kept_lines = text_stats.Parts(cleaned, lines.parents, batch.num_rows).select(survives)
        joined = text_stats.join_per_row(kept_lines, "\n")
        cleaned_batch = batch.set_column(batch.schema.get_field_index("text"), "text", text_stats.strip(joined))
        return apply_verdict(batch, rules.verdict(), ctx, cleaned_batch)

    def _sentences(self, lines: pa.Array) -> np.ndarray:
        """Sentences in each line (at least one)."""
        ends = sum(text_stats.regex_counts(lines, pattern) for pattern in self._sentence_ends)
        return 1 + ends - text_stats.regex_counts(lines, self._abbreviation_ends)


def _first_per_row(parents: np.ndarray, hits: np.ndarray, rows: int) -> np.ndarray:
    """Per row, the flat index of its first part where `hits` is true; -1 where there is none."""
    first = np.full(rows, -1, dtype=np.int64)
    positions = np.flatnonzero(hits)
    hit_rows, first_of_row = np.unique(parents[positions], return_index=True)
    first[hit_rows] = positions[first_of_row]
    return first


def _bad_words_pattern(path: Path) -> str:
    """Any listed word, lowercase, not inside a longer word (an RE2 pattern)."""
    words = [line.strip().lower() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if not words:
        raise ValueError(f"bad_words_file {path} lists no words")
    return rf"(?:^|[^\pL\pN_])(?:{'|'.join(map(text_stats.re2_literal, words))})(?:[^\pL\pN_]|\z)"
