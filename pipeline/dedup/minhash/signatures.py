"""MinHash signatures and LSH band keys of a batch, and the map phase that shuffles them by band key.

Permutation k maps a shingle hash h to the high 32 bits of `a_k * h + b_k (mod 2**64)` with a_k odd
(multiply-shift hashing); the signature is the minimum over the document's shingles. Band j's key
mixes its `rows` values into one uint64, so equal keys mean equal bands (up to 64-bit collisions).
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.doc_keys import doc_keys
from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.shingle_sets import ShingleSetWriter
from gristmill.pipeline.dedup.minhash.shingles import shingle_hashes
from gristmill.pipeline.dedup.phase import Summary, marker_path, resumable
from gristmill.pipeline.dedup.shard_io import read_shard
from gristmill.pipeline.dedup.shuffle import PartitionedWriter
from gristmill.pipeline.dedup.string_hash import mix64
from gristmill.pipeline.errors import UserError

BUCKET_SCHEMA = pa.schema(
    [("band", pa.uint16()), ("key", pa.uint64()), ("doc", pa.uint64()), ("priority", pa.float64())]
)
EMPTY = np.uint32(np.iinfo(np.uint32).max)


def permutations(config: MinHashConfig) -> tuple[np.ndarray, np.ndarray]:
    """The (a, b) parameters of every permutation, a function of the seed only."""
    rng = np.random.default_rng(config.seed)
    multipliers = rng.integers(0, 2**63, size=config.permutations, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    offsets = rng.integers(0, 2**63, size=config.permutations, dtype=np.uint64)
    return multipliers, offsets


def signatures(hashes: np.ndarray, offsets: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """[documents, permutations] uint32 minimum hashes; rows of documents without shingles are all EMPTY."""
    documents = len(offsets) - 1
    result = np.full((documents, config.permutations), EMPTY, dtype=np.uint32)
    nonempty = np.flatnonzero(np.diff(offsets) > 0)
    if len(nonempty) == 0:
        return result
    starts = offsets[:-1][nonempty]
    permuted = np.empty_like(hashes)
    for k, (multiplier, offset) in enumerate(zip(*permutations(config))):
        np.multiply(hashes, multiplier, out=permuted)
        np.add(permuted, offset, out=permuted)
        result[nonempty, k] = np.minimum.reduceat(permuted, starts) >> np.uint64(32)
    return result


def band_keys(signature: np.ndarray, config: MinHashConfig) -> np.ndarray:
    """[documents, bands] uint64: each band's `rows` values mixed into one key (seeded by the band index)."""
    bands = signature.reshape(len(signature), config.bands, config.rows).astype(np.uint64)
    keys = np.broadcast_to(mix64(np.arange(config.bands, dtype=np.uint64) + np.uint64(config.seed)), bands.shape[:2])
    for row in range(config.rows):
        keys = mix64(keys ^ bands[:, :, row])
    return keys


def priorities(batch: pa.RecordBatch, config: MinHashConfig) -> np.ndarray:
    """The keep-highest score of every row (0 when not configured; missing scores lose)."""
    if config.keep_highest is None:
        return np.zeros(batch.num_rows)
    if config.keep_highest not in batch.schema.names:
        raise UserError(f"keep_highest: no column {config.keep_highest!r} (columns: {', '.join(batch.schema.names)})")
    scores = batch.column(config.keep_highest).cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.nan_to_num(scores, nan=-np.inf)


@dataclass(frozen=True)
class SignatureTask:
    config: MinHashConfig
    shard: int
    input_path: str
    buckets_dir: str

    @property
    def marker(self) -> Path:
        return marker_path(self.buckets_dir, self.shard)


@resumable
def write_band_keys(task: SignatureTask) -> Summary:
    """Map phase: one row per (document with shingles, band), partitioned by band key."""
    config = task.config
    writer = PartitionedWriter(Path(task.buckets_dir), task.shard, config.partitions, BUCKET_SCHEMA)
    shingle_sets = ShingleSetWriter(Path(task.buckets_dir), task.shard) if config.verify else None
    documents = 0
    try:
        for first_row, batch in read_shard(task.input_path, config.batch_size):
            hashes, offsets = shingle_hashes(batch.column("text"), config)
            if shingle_sets is not None:
                shingle_sets.write(hashes, offsets)
            nonempty = np.diff(offsets) > 0
            keys = band_keys(signatures(hashes, offsets, config)[nonempty], config)
            docs = np.repeat(doc_keys(task.shard, first_row, batch.num_rows)[nonempty], config.bands)
            rows = pa.RecordBatch.from_arrays(
                [
                    pa.array(np.tile(np.arange(config.bands, dtype=np.uint16), len(keys))),
                    pa.array(keys.ravel()),
                    pa.array(docs),
                    pa.array(np.repeat(priorities(batch, config)[nonempty], config.bands)),
                ],
                schema=BUCKET_SCHEMA,
            )
            writer.write(rows, (keys.ravel() % np.uint64(config.partitions)).astype(np.int64))
            documents += batch.num_rows
    except BaseException:
        writer.abort()
        if shingle_sets is not None:
            shingle_sets.abort()
        raise
    files = writer.close()
    if shingle_sets is not None:
        files.append(str(shingle_sets.close().relative_to(Path(task.buckets_dir))))
    return {"files": files, "docs": documents}
