"""Helpers for flat arrays split into documents by offsets (document i owns values[offsets[i]:offsets[i + 1]])."""

import numpy as np

from gristmill.pipeline.dedup.string_hash import mix64

_POSITION_WEIGHTS = mix64(np.arange(1, 65, dtype=np.uint64)) | np.uint64(1)


def group_starts(*sorted_keys: np.ndarray) -> np.ndarray:
    """True where a new group begins in rows sorted by `sorted_keys` (a row whose keys differ from the last)."""
    starts = np.zeros(len(sorted_keys[0]), dtype=bool)
    starts[:1] = True
    for key in sorted_keys:
        starts[1:] |= key[1:] != key[:-1]
    return starts


def owners(offsets: np.ndarray) -> np.ndarray:
    """The document index of every value."""
    return np.repeat(np.arange(len(offsets) - 1), np.diff(offsets))


def ngram_windows(offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(starts, ends, window_offsets) of every window of `ngram` consecutive values inside each document.

    A window covers values starts[w] .. min(starts[w] + ngram, ends[w]) - 1; a document shorter than
    `ngram` has one window of all its values, an empty one has none.
    """
    lengths = np.diff(offsets)
    counts = np.where(lengths >= ngram, lengths - ngram + 1, np.minimum(lengths, 1))
    window_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    owner = owners(window_offsets)
    starts = np.arange(window_offsets[-1]) - window_offsets[owner] + offsets[owner]
    return starts, offsets[owner + 1], window_offsets


def unique_per_document(values: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, offsets) with every document's values sorted and de-duplicated."""
    owner = owners(offsets)
    order = np.lexsort((values, owner))
    values, owner = values[order], owner[order]
    first = group_starts(values, owner)
    counts = np.bincount(owner[first], minlength=len(offsets) - 1)
    return values[first], np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def combine_ngrams(token_hashes: np.ndarray, token_offsets: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every window of `ngram` consecutive tokens inside each document, with their offsets."""
    starts, ends, offsets = ngram_windows(token_offsets, ngram)
    combined = np.zeros(len(starts), dtype=np.uint64)
    last = max(len(token_hashes) - 1, 0)
    for position in range(ngram):
        index = starts + position
        weight = _POSITION_WEIGHTS[position % len(_POSITION_WEIGHTS)]
        combined += np.where(index < ends, token_hashes[np.minimum(index, last)] * weight, np.uint64(0))
    return mix64(combined), offsets
