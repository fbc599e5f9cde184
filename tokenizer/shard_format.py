"""The token-shard format, the contract between the tokenizer (writes) and the trainer (reads).

A token dataset is a directory: `manifest.json` plus `part-XXXXX.arrow` Arrow IPC files with the columns
`id: string`, `tokens: list<uint16|uint32>` (EOS already appended) and `num_tokens: int32`. Shards are
uncompressed by default so they memory-map zero-copy. This module writes shards and whole small datasets;
`TokenDataset` (gristmill.tokenizer.dataset) reads them.
"""

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.tokenizer.dataset import TokenDataset
from gristmill.tokenizer.manifest import (
    ShardEntry,
    SpecialIds,
    TokenManifest,
    file_sha256,
    shard_file_name,
    shard_schema,
    token_dtype,
    write_manifest,
)

__all__ = [
    "ShardEntry",
    "TokenDataset",
    "TokenManifest",
    "TokenShardWriter",
    "token_batch",
    "write_manifest",
    "write_token_dataset",
    "write_token_shard",
]

TokenLists = pa.Array | tuple[np.ndarray, np.ndarray]
"""Documents' tokens: a list array, or (flat tokens, offsets) with offsets[0] == 0, offsets[-1] == len(flat)."""


def _check_fits(tokens: np.ndarray, dtype: str) -> None:
    if tokens.dtype.kind not in "iu":
        raise ValueError(f"token ids must be integers, got dtype {tokens.dtype}")
    if tokens.size and (tokens.min() < 0 or tokens.max() > np.iinfo(dtype).max):
        raise ValueError(f"token ids span [{tokens.min()}, {tokens.max()}], outside {dtype}")


def token_list_array(token_lists: TokenLists, dtype: str) -> pa.ListArray:
    """Either input form as list<dtype>; ids that do not fit are refused rather than wrapped."""
    value_type = pa.from_numpy_dtype(np.dtype(dtype))
    if isinstance(token_lists, tuple):
        flat, offsets = (np.asarray(a) for a in token_lists)
        if offsets.ndim != 1 or len(offsets) == 0 or offsets[0] != 0 or offsets[-1] != len(flat):
            raise ValueError(f"offsets must run from 0 to len(tokens)={len(flat)}, got {offsets[:1]}..{offsets[-1:]}")
        if np.any(np.diff(offsets) < 0) or offsets[-1] >= 2**31:
            raise ValueError("offsets must be non-decreasing and below 2**31 per batch")
        _check_fits(flat, dtype)
        return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(flat.astype(dtype, copy=False)))
    if not (pa.types.is_list(token_lists.type) and pa.types.is_integer(token_lists.type.value_type)):
        raise ValueError(f"token lists must be a list<integer> array, got {token_lists.type}")
    if token_lists.null_count:
        raise ValueError(f"token lists hold {token_lists.null_count} nulls; write an empty list instead")
    try:
        return token_lists.cast(pa.list_(value_type))
    except pa.ArrowInvalid as err:
        raise ValueError(f"token ids do not fit {dtype}: {err}") from None


def token_batch(ids: pa.Array | Sequence[str], token_lists: TokenLists, dtype: str) -> pa.RecordBatch:
    """One record batch of the shard schema, `num_tokens` derived from the token lists."""
    tokens = token_list_array(token_lists, dtype)
    ids = ids.cast(pa.string()) if isinstance(ids, pa.Array) else pa.array(ids, pa.string())
    if len(ids) != len(tokens):
        raise ValueError(f"{len(ids)} ids for {len(tokens)} token lists")
    lengths = pc.list_value_length(tokens).cast(pa.int32())
    return pa.record_batch([ids, tokens, lengths], schema=shard_schema(dtype))


class TokenShardWriter:
    """Streams record batches into one shard under a temporary name; `close` renames it into place.

    A shard therefore exists under its final name only when whole, and its `ShardEntry` (counts, size, hash)
    comes from the file as written.
    """

    def __init__(self, path: str | Path, dtype: str, *, compression: str | None = None) -> None:
        self.path = Path(path)
        self.dtype = dtype
        self._temporary = self.path.with_name(f".{self.path.name}.tmp")
        self._sink = pa.OSFile(str(self._temporary), "wb")
        options = pa.ipc.IpcWriteOptions(compression=compression)
        self._writer = pa.ipc.new_file(self._sink, shard_schema(dtype), options=options)
        self.num_documents = self.num_tokens = 0

    def write(self, ids: pa.Array | Sequence[str], token_lists: TokenLists) -> None:
        batch = token_batch(ids, token_lists, self.dtype)
        self._writer.write_batch(batch)
        self.num_documents += batch.num_rows
        self.num_tokens += int(pc.sum(batch.column("num_tokens")).as_py() or 0)

    def close(self) -> ShardEntry:
        self._writer.close()
        self._sink.close()
        os.replace(self._temporary, self.path)
        return ShardEntry(
            file=self.path.name,
            num_documents=self.num_documents,
            num_tokens=self.num_tokens,
            bytes=self.path.stat().st_size,
            sha256=file_sha256(self.path),
        )

    def abort(self) -> None:
        """Drops the partial file, so a failed shard leaves nothing a rerun could mistake for output."""
        self._sink.close()
        self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> "TokenShardWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        if kind is not None:
            self.abort()


def write_token_shard(
    path: str | Path,
    ids: pa.Array | Sequence[str],
    token_lists: TokenLists,
    dtype: str,
    *,
    compression: str | None = None,
) -> ShardEntry:
    """One shard from one batch of documents (each token list must already end with EOS)."""
    with TokenShardWriter(path, dtype, compression=compression) as writer:
        writer.write(ids, token_lists)
        return writer.close()


def write_token_dataset(
    directory: str | Path,
    documents: Sequence[np.ndarray],
    *,
    vocab_size: int,
    eos_id: int,
    bos_id: int | None = None,
    pad_id: int | None = None,
    docs_per_shard: int = 1000,
    validation_fraction: float = 0.0,
    seed: int = 0,
) -> Path:
    """A complete token dataset from in-memory token arrays, for tests; ids are `doc-00000000`, ...

    Documents are stored exactly as given, so each must be non-empty and end with `eos_id`, as the
    tokenize stage guarantees.
    """
    if docs_per_shard < 1:
        raise ValueError(f"docs_per_shard must be >= 1, got {docs_per_shard}")
    manifest = TokenManifest(
        tokenizer_file=None,
        tokenizer_sha256=None,
        vocab_size=vocab_size,
        special_ids=SpecialIds(eos=eos_id, bos=bos_id, pad=pad_id),
        shards=(),
        validation_fraction=validation_fraction,
        seed=seed,
    )
    for i, doc in enumerate(np.asarray(d) for d in documents):
        if doc.ndim != 1 or len(doc) == 0 or doc[-1] != eos_id:
            raise ValueError(f"documents[{i}] must be a non-empty 1-D array ending with eos_id={eos_id}")
        if doc.dtype.kind not in "iu" or doc.min() < 0 or doc.max() >= vocab_size:
            raise ValueError(f"documents[{i}] has token ids outside [0, vocab_size={vocab_size})")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    dtype = token_dtype(vocab_size)
    shards = []
    for index, start in enumerate(range(0, len(documents), docs_per_shard)):
        chunk = [np.asarray(d) for d in documents[start : start + docs_per_shard]]
        offsets = np.concatenate([[0], np.cumsum([len(d) for d in chunk])])
        ids = [f"doc-{start + j:08d}" for j in range(len(chunk))]
        shards.append(write_token_shard(directory / shard_file_name(index), ids, (np.concatenate(chunk), offsets), dtype))
    write_manifest(directory, dataclasses.replace(manifest, shards=tuple(shards)))
    return directory
