"""Vectorized text measurements over whole Arrow batches, shared by the heuristic filters.

Text is split into parts (lines, paragraphs, words) with Arrow's RE2 kernels; every per-document
number is then a sum, count or maximum over the flattened parts grouped by their row (`np.bincount`
on the parent index). Nothing here loops over documents in Python, and every step is linear in the
text length, so a 50 MB document costs what fifty 1 MB documents cost.

Words follow the shape of spaCy's English tokenizer, which datatrove uses: whitespace separates
chunks; punctuation and symbols at either end of a chunk are words of their own, one character each
(a run of dots is one word; `/`, `-`, `.` stay on the start of a word); what remains
in the middle is one word, split at a hyphen or slash before a letter and with a clitic split off
("don't" is `do`, `n't`). spaCy's special cases (abbreviations, URLs, emoticons) are not copied;
bench/results/filters.md lists the documents of the sample corpus where that changes a decision.
"""

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

SYMBOL_CLASS = r"\p{Pd}\p{Ps}\p{Pe}\p{Pi}\p{Pf}\p{Po}\pS\p{Cc}"
"""Punctuation except connectors (`_`), symbols, controls: a word made only of these and `_` is a
symbol word, and only a chunk holding one of them (or a HEAD character) can split into several words."""
HEAD = r"[^\pL\pN\pM\pZ/\-.\\@^|~]"
"""What splits off the start of a chunk, one word per character: punctuation and symbols, except the
few that spaCy leaves on a word ("/proc", "-v", ".SH")."""
TAIL = r"[^\pL\pN\pM\pZ/\-\\@^|~]"
"""What splits off the end of a chunk: as HEAD, and a final period too."""
CLITIC = r"(?i)(n['’]t|['’](?:s|m|d|re|ve|ll))\z"
INFIXES = (r"([\pL\pN])([-:<>=/])(\pL)", r"(\pN)([-+*^])(\pN)")
"""Hyphens, slashes and the like before a letter, arithmetic between digits, split a word ("31-bit", "1-2")."""
NON_SYMBOL = rf"[^{SYMBOL_CLASS}\p{{Pc}}]"
PYTHON_WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x1f\x85\pZ "
"""What `str.strip()` and `str.split()` treat as whitespace, as an RE2 class body."""
LINE_BREAK = r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\x{2028}\x{2029}]"
"""The separators of `str.splitlines()`."""


@dataclass
class Parts:
    """The parts of every document of a batch, flattened: `values[i]` belongs to row `parents[i]`."""

    values: pa.Array
    parents: np.ndarray
    rows: int

    @classmethod
    def of(cls, lists: pa.Array) -> "Parts":
        lists = lists.combine_chunks() if isinstance(lists, pa.ChunkedArray) else lists
        return cls(lists.flatten(), pc.list_parent_indices(lists).to_numpy(), len(lists))

    def count(self, mask: pa.Array | np.ndarray | None = None) -> np.ndarray:
        """Parts per row; with `mask`, only the parts where it is true."""
        weights = None if mask is None else _numpy(mask).astype(np.float64)
        return np.bincount(self.parents, weights=weights, minlength=self.rows).astype(np.int64)

    def sum(self, values: pa.Array | np.ndarray) -> np.ndarray:
        return np.bincount(self.parents, weights=_numpy(values).astype(np.float64), minlength=self.rows)

    def lengths(self) -> np.ndarray:
        """Characters (code points, as Python's `len`) of every part."""
        return _numpy(pc.utf8_length(self.values))

    def nonempty(self) -> "Parts":
        """Without empty parts (splitting on whitespace leaves one between two spaces)."""
        return self.select(_numpy(pc.binary_length(self.values)) > 0)

    def select(self, mask: pa.Array | np.ndarray) -> "Parts":
        keep = _numpy(mask).astype(bool)
        return Parts(self.values.filter(pa.array(keep)), self.parents[keep], self.rows)

    def duplicates(self) -> tuple[np.ndarray, np.ndarray]:
        """Per row: parts equal to an earlier part of the same row, and their total characters."""
        ids = _numpy(pc.dictionary_encode(self.values).indices).astype(np.int64)
        keys = self.parents.astype(np.int64) * (int(ids.max(initial=0)) + 1) + ids
        repeated = np.ones(len(keys), dtype=bool)
        repeated[np.unique(keys, return_index=True)[1]] = False
        return self.count(repeated), self.sum(np.where(repeated, self.lengths(), 0))


def _numpy(values: pa.Array | pa.ChunkedArray | np.ndarray) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    return values.to_numpy(zero_copy_only=False)


def char_counts(texts: pa.Array) -> np.ndarray:
    return _numpy(pc.utf8_length(texts)).astype(np.int64)


def substring_counts(texts: pa.Array, needle: str) -> np.ndarray:
    """Non-overlapping occurrences per row, as `str.count`."""
    return _numpy(pc.count_substring(texts, needle)).astype(np.int64)


def splitlines(texts: pa.Array) -> Parts:
    """The lines of every row exactly as `str.splitlines()` gives them (no trailing empty line)."""
    trimmed = pc.replace_substring_regex(texts, rf"(?:{LINE_BREAK})\z", "")
    lists = pc.split_pattern_regex(trimmed, LINE_BREAK)
    parts = Parts.of(lists)
    empty_rows = np.flatnonzero(char_counts(texts) == 0)
    if len(empty_rows) == 0:
        return parts
    drop = np.isin(parts.parents, empty_rows)
    return parts.select(~drop)


def split(texts: pa.Array, pattern: str) -> Parts:
    """Parts between matches of an RE2 `pattern`, as Python's `re.split` gives them."""
    return Parts.of(pc.split_pattern_regex(texts, pattern))


def words(texts: pa.Array) -> Parts:
    """The words of every row (see the module docstring for what a word is)."""
    chunks = Parts.of(pc.utf8_split_whitespace(texts)).nonempty()
    splittable = matches(chunks.values, rf"[{SYMBOL_CLASS}_]|{HEAD}")
    if not splittable.any():
        return chunks
    mask = pa.array(splittable)
    spaced = pc.replace_with_mask(chunks.values, mask, _split_chunks(chunks.values.filter(mask)))
    joined = join_per_row(Parts(spaced, chunks.parents, chunks.rows), " ")
    return Parts.of(pc.utf8_split_whitespace(joined)).nonempty()


def _split_chunks(chunks: pa.Array) -> pa.Array:
    """Each chunk with spaces between its words (only chunks holding punctuation or symbols need this).

    The head is the run of symbols a chunk starts with, the tail the run it ends with (read on the
    reversed chunk), the core what lies between; plain anchored patterns keep RE2 on its fast path.
    """
    head = pc.extract_regex(chunks, rf"^(?P<run>{HEAD}*)").field("run")
    reversed_rest = pc.utf8_reverse(pc.replace_substring_regex(chunks, rf"^{HEAD}+", ""))
    tail = pc.utf8_reverse(pc.extract_regex(reversed_rest, rf"^(?P<run>{TAIL}*)").field("run"))
    core = pc.utf8_reverse(pc.replace_substring_regex(reversed_rest, rf"^{TAIL}+", ""))
    core = pc.replace_substring_regex(core, CLITIC, r" \1")
    for infix in INFIXES:
        for _ in range(2):  # a match consumes the character after the infix, so "a-b-c" needs a second pass
            core = pc.replace_substring_regex(core, infix, r"\1 \2 \3")
    head, tail = (_one_word_per_symbol(run) for run in (head, tail))
    return pc.binary_join_element_wise(head, core, tail, pa.scalar(" ", chunks.type))


def _one_word_per_symbol(runs: pa.Array) -> pa.Array:
    """Spaces between the symbols of each run, except inside a run of dots ("...")."""
    long_runs = pa.array(_numpy(pc.utf8_length(runs)) > 1)
    spaced = pc.replace_substring_regex(runs.filter(long_runs), r"(?s)(\.\.+|.)", r"\1 ")
    return pc.replace_with_mask(runs, long_runs, spaced)


def join_per_row(parts: Parts, separator: str) -> pa.Array:
    """One string per row: its parts joined with `separator` (an empty row gives "")."""
    offsets = np.concatenate([[0], np.cumsum(parts.count())])
    per_row = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), parts.values)
    return pc.binary_join(per_row, pa.scalar(separator, parts.values.type))


def strip(values: pa.Array) -> pa.Array:
    """`str.strip()` on every value."""
    return pc.replace_substring_regex(values, rf"^[{PYTHON_WHITESPACE}]+|[{PYTHON_WHITESPACE}]+\z", "")


def regex_counts(values: pa.Array, pattern: str) -> np.ndarray:
    """Non-overlapping matches of an RE2 `pattern` per value."""
    return _numpy(pc.count_substring_regex(values, pattern)).astype(np.int64)


def matches(values: pa.Array, pattern: str) -> np.ndarray:
    return _numpy(pc.match_substring_regex(values, pattern)).astype(bool)


def safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (a NaN never fails a threshold)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denominator > 0, numerator / np.maximum(denominator, 1), np.nan)


@functools.cache
def sentence_terminals() -> str:
    """Every character with the Unicode Sentence_Terminal property (`.`, `?`, `!`, `。`, `।`, ...)."""
    import regex

    every_char = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    return "".join(regex.findall(r"\p{Sentence_Terminal}", every_char))


def re2_literal(text: str) -> str:
    """`text` as an RE2 pattern matching it literally (every character escaped by code point)."""
    return "".join(f"\\x{{{ord(c):x}}}" for c in text)


def char_class(chars: str) -> str:
    """An RE2 character class matching exactly `chars`."""
    return f"[{re2_literal(chars)}]"
