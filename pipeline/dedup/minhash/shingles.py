"""Shingle hashes of a whole batch at once: normalize, split into tokens, hash tokens, combine n-grams.

Everything is numpy over flat arrays with per-document offsets; no Python loop runs per document,
token or shingle.
"""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.normalize import normalize_text
from gristmill.pipeline.dedup.string_hash import hash_strings, mix64

_UNSPACED_SCRIPTS = r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}])"
_POSITION_WEIGHTS = mix64(np.arange(1, 65, dtype=np.uint64)) | np.uint64(1)


def tokens(text: pa.Array, config: MinHashConfig) -> pa.ListArray:
    """The token list of every document: words, or single characters."""
    text = normalize_text(text, config.normalize)
    if config.shingle == "chars":
        return pc.split_pattern(pc.replace_substring_regex(text, "(.)", "\\1\x00"), "\x00", max_splits=None)
    if config.split_cjk:
        text = pc.replace_substring_regex(text, _UNSPACED_SCRIPTS, r" \1 ")
    return pc.utf8_split_whitespace(text)


def shingle_hashes(text: pa.Array, config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, offsets): document i's shingles are hashes[offsets[i]:offsets[i + 1]].

    A document with fewer tokens than `ngram` has one shingle of all its tokens; one without
    tokens has none.
    """
    token_lists = tokens(text, config)
    values = token_lists.flatten()
    nonempty = pc.greater(pc.utf8_length(values), 0)
    owners = pc.filter(pc.list_parent_indices(token_lists), nonempty).to_numpy(zero_copy_only=False)
    lengths = np.bincount(owners, minlength=len(text))
    token_offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return combine_ngrams(hash_strings(pc.filter(values, nonempty)), token_offsets, config.ngram)


def combine_ngrams(token_hashes: np.ndarray, token_offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of `ngram` consecutive tokens inside each document."""
    lengths = np.diff(token_offsets)
    counts = np.where(lengths >= ngram, lengths - ngram + 1, np.minimum(lengths, 1))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    owner = np.repeat(np.arange(len(lengths)), counts)
    starts = np.arange(offsets[-1]) - offsets[owner] + token_offsets[owner]
    ends = token_offsets[owner + 1]
    combined = np.zeros(len(starts), dtype=np.uint64)
    last = max(len(token_hashes) - 1, 0)
    for position in range(ngram):
        index = starts + position
        inside = index < ends
        weight = _POSITION_WEIGHTS[position % len(_POSITION_WEIGHTS)]
        combined += np.where(inside, token_hashes[np.minimum(index, last)] * weight, np.uint64(0))
    return mix64(combined), offsets
