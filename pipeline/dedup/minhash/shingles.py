"""Shingle hashes of a whole batch at once: normalize, split into tokens, hash tokens, combine n-grams.

Everything is numpy over flat arrays with per-document offsets; no Python loop runs per document,
token or shingle.
"""

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.normalize import normalize_text
from gristmill.pipeline.dedup.segments import combine_ngrams
from gristmill.pipeline.dedup.string_hash import hash_strings

_UNSPACED_SCRIPTS = r"([\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}\p{Thai}])"


def tokens(text: pa.Array, config: MinHashConfig) -> pa.ListArray:
    """The token list of every document: words, or single characters."""
    if config.shingle == "chars":
        text = normalize_text(text, config.normalize)
        return pc.split_pattern(pc.replace_substring_regex(text, "(?s)(.)", "\\1\x00"), "\x00", max_splits=None)
    # Splitting on whitespace makes normalizing it moot.
    text = normalize_text(text, replace(config.normalize, whitespace=False))
    if config.split_cjk and pc.any(pc.match_substring_regex(text, _UNSPACED_SCRIPTS)).as_py():
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
