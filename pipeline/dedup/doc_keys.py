"""Document keys: one uint64 per document, `shard << 32 | row`, which is also the deterministic order.

The earliest document of a duplicate group is the one with the smallest key: the first input shard
(inputs are sorted) and, inside it, the first row. Keys below 2**53 stay exact as float64, which is
how they travel in the `value` column of `removed/`.
"""

import numpy as np

ROW_BITS = np.uint64(32)
ROW_MASK = np.uint64((1 << 32) - 1)


def doc_keys(shard: int, first_row: int, count: int) -> np.ndarray:
    """Keys of `count` consecutive rows of `shard` starting at `first_row`."""
    return (np.uint64(shard) << ROW_BITS) + np.arange(first_row, first_row + count, dtype=np.uint64)


def shard_of(keys: np.ndarray) -> np.ndarray:
    return (keys >> ROW_BITS).astype(np.int64)


def row_of(keys: np.ndarray) -> np.ndarray:
    return (keys & ROW_MASK).astype(np.int64)
