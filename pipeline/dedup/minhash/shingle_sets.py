"""Each document's set of shingle hashes, kept when candidate pairs are verified by true Jaccard.

One Arrow IPC file per shard, one row (a sorted list of unique uint64) per document in row order.
Readers memory-map the files, so verifying a pair touches only the two documents' pages.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.doc_keys import row_of, shard_of
from gristmill.pipeline.dedup.segments import unique_per_document
from gristmill.pipeline.dedup.shuffle import read_arrow
from gristmill.pipeline.writers import open_writer

SHINGLE_SET_SCHEMA = pa.schema([("shingles", pa.large_list(pa.uint64()))])


def shingle_set_file(buckets_dir: Path, shard: int) -> Path:
    return buckets_dir / "shingles" / f"part-{shard:05d}.arrow"


class ShingleSetWriter:
    def __init__(self, buckets_dir: Path, shard: int) -> None:
        path = shingle_set_file(buckets_dir, shard)
        self._writer = open_writer("arrow", path.with_suffix(""), SHINGLE_SET_SCHEMA)

    def write(self, hashes: np.ndarray, offsets: np.ndarray) -> None:
        values, unique_offsets = unique_per_document(hashes, offsets)
        sets = pa.LargeListArray.from_arrays(pa.array(unique_offsets), pa.array(values, pa.uint64()))
        self._writer.write(pa.RecordBatch.from_arrays([sets], schema=SHINGLE_SET_SCHEMA))

    def close(self) -> Path:
        return self._writer.close()

    def abort(self) -> None:
        self._writer.abort()


class ShingleSets:
    """Random access to the shingle sets of all shards by document key, zero-copy from memory maps."""

    def __init__(self, buckets_dir: Path) -> None:
        self.buckets_dir = buckets_dir
        self._shards: dict[int, tuple[np.ndarray, list[pa.LargeListArray]]] = {}

    def _shard(self, shard: int) -> tuple[np.ndarray, list[pa.LargeListArray]]:
        if shard not in self._shards:
            chunks = read_arrow(shingle_set_file(self.buckets_dir, shard)).column("shingles").chunks
            starts = np.cumsum([0] + [len(chunk) for chunk in chunks])
            self._shards[shard] = (starts, chunks)
        return self._shards[shard]

    def get(self, doc: int) -> np.ndarray:
        starts, chunks = self._shard(int(shard_of(np.uint64(doc))))
        row = int(row_of(np.uint64(doc)))
        chunk = int(np.searchsorted(starts, row, side="right")) - 1
        return chunks[chunk][row - int(starts[chunk])].values.to_numpy()

    def jaccard(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """True Jaccard similarity of each pair of documents (left[i], right[i])."""
        similarity = np.empty(len(left))
        for index, (a, b) in enumerate(zip(left.tolist(), right.tolist())):
            first, second = self.get(a), self.get(b)
            shared = len(np.intersect1d(first, second, assume_unique=True))
            union = len(first) + len(second) - shared
            similarity[index] = shared / union if union else 1.0
        return similarity
