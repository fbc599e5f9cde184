"""Lays documents out into final shards of a target size, in order or globally shuffled (seeded).

The tokenize stage writes one shard per input file, so shard sizes follow the inputs and each shard holds
one source. Rewriting them here gives shards of about `shard_bytes` and, with a seed, mixes sources across
all shards, so a trainer that reads shards in order still sees every source throughout.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.tokenizer.dataset import ShardSequence
from gristmill.tokenizer.manifest import ShardEntry, shard_file_name
from gristmill.tokenizer.shard_format import TokenShardWriter

DOCS_PER_WRITE = 8192
"""Documents per record batch of an output shard: bounds the memory of one gather."""


def shard_ranges(lengths: np.ndarray, token_bytes: int, shard_bytes: int) -> list[tuple[int, int]]:
    """[start, end) positions cutting documents of `lengths` tokens into runs of about `shard_bytes`.

    A document goes to the shard in which its first byte falls, so no shard is empty and a document
    longer than a whole shard stays whole.
    """
    if len(lengths) == 0:
        return []
    sizes = lengths.astype(np.int64) * token_bytes
    shard_of = (np.cumsum(sizes) - sizes) // shard_bytes
    cuts = (np.flatnonzero(np.diff(shard_of)) + 1).tolist()
    return list(zip([0, *cuts], [*cuts, len(lengths)]))


def reshard(
    source: ShardSequence,
    directory: Path,
    *,
    dtype: str,
    shard_bytes: int,
    seed: int | None,
    compression: str | None,
) -> list[ShardEntry]:
    """Writes `source`'s documents as `directory/part-XXXXX.arrow`; `seed=None` keeps their order."""
    count = len(source)
    order = np.arange(count) if seed is None else np.random.default_rng(seed).permutation(count)
    lengths = source.lengths[order]
    ids = pa.chunked_array(list(source.ids()), pa.string())
    directory.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, (start, end) in enumerate(shard_ranges(lengths, np.dtype(dtype).itemsize, shard_bytes)):
        with TokenShardWriter(directory / shard_file_name(index), dtype, compression=compression) as writer:
            for first in range(start, end, DOCS_PER_WRITE):
                chosen = order[first : min(first + DOCS_PER_WRITE, end)]
                if seed is None:
                    tokens = source.span(first, first + len(chosen))
                else:
                    tokens = np.concatenate([source.document(int(i)) for i in chosen])
                offsets = np.concatenate([[0], np.cumsum(lengths[first : first + len(chosen)])])
                writer.write(ids.take(pa.array(chosen)).combine_chunks(), (tokens, offsets))
            entries.append(writer.close())
    return entries
