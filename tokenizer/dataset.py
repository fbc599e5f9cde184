"""Read side of the token-shard format: a checked, memory-mapped view of a whole token dataset.

Opening checks the manifest against the files (present, same size, same schema and counts, tokenizer hash)
so a trainer fails before its first step, naming the bad file; tokens are then served as zero-copy numpy
views into the mapped shards, so memory use does not grow with the dataset.
"""

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa

from gristmill.tokenizer.manifest import (
    ShardEntry,
    file_sha256,
    read_manifest,
    shard_schema,
    validation_mask,
)

_ID, _TOKENS, _NUM_TOKENS = range(3)
_COMPRESSED_BATCHES_KEPT = 8


class MappedShard:
    """One shard file mapped into memory; a record batch is decoded on first use and kept.

    Uncompressed batches are views into the map, so all are kept; LZ4 batches are real copies, so only the
    last few are.
    """

    def __init__(self, path: Path, dtype: str, *, compressed: bool = False) -> None:
        self.path = path
        self._keep = _COMPRESSED_BATCHES_KEPT if compressed else None
        self._batches: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        try:
            self._reader = pa.ipc.open_file(pa.memory_map(str(path)))
            if not self._reader.schema.equals(shard_schema(dtype)):
                raise ValueError(f"{path}: schema {self._reader.schema} is not the {dtype} token-shard schema")
            batch_lengths = [np.asarray(c, dtype=np.int64) for c in self.column(_NUM_TOKENS)]
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"{path}: not a readable token shard ({err})") from None
        self.lengths = np.concatenate(batch_lengths) if batch_lengths else np.zeros(0, np.int64)
        self.batch_starts = np.cumsum([0] + [len(b) for b in batch_lengths])

    @classmethod
    def open_checked(cls, path: Path, entry: ShardEntry, dtype: str, *, compressed: bool, verify_checksum: bool
                     ) -> "MappedShard":
        """Opens a shard after checking it against its manifest entry; every mismatch names the file."""
        if not path.is_file():
            raise ValueError(f"{path}: shard listed in manifest.json is missing")
        size = path.stat().st_size
        if size != entry.bytes:
            raise ValueError(f"{path}: {size} bytes on disk, manifest.json records {entry.bytes} (truncated?)")
        if verify_checksum and file_sha256(path) != entry.sha256:
            raise ValueError(f"{path}: sha256 differs from manifest.json (the file is corrupted)")
        shard = cls(path, dtype, compressed=compressed)
        num_tokens = int(shard.lengths.sum())
        if len(shard.lengths) != entry.num_documents or num_tokens != entry.num_tokens:
            raise ValueError(
                f"{path}: holds {len(shard.lengths)} documents / {num_tokens} tokens, "
                f"manifest.json records {entry.num_documents} / {entry.num_tokens}"
            )
        return shard

    def column(self, index: int) -> Iterator[pa.Array]:
        """One column, batch by batch, decoding (and decompressing) nothing else."""
        options = pa.ipc.IpcReadOptions(included_fields=[index])
        reader = pa.ipc.open_file(pa.memory_map(str(self.path)), options=options)
        for b in range(reader.num_record_batches):
            yield reader.get_batch(b).column(0)

    def batch(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(flat tokens, offsets) of record batch `b`, checked against the recorded lengths."""
        if b in self._batches:
            return self._batches[b]
        tokens = self._reader.get_batch(b).column(_TOKENS)
        offsets = tokens.offsets.to_numpy()
        values = tokens.values.to_numpy()
        if not np.array_equal(np.diff(offsets), self.lengths[self.batch_starts[b] : self.batch_starts[b + 1]]):
            raise ValueError(f"{self.path}: tokens of record batch {b} disagree with num_tokens (corrupted)")
        if self._keep is not None and len(self._batches) >= self._keep:
            del self._batches[next(iter(self._batches))]
        self._batches[b] = values, offsets
        return values, offsets

    def document(self, j: int) -> np.ndarray:
        b = int(np.searchsorted(self.batch_starts, j, side="right")) - 1
        values, offsets = self.batch(b)
        k = j - self.batch_starts[b]
        return values[offsets[k] : offsets[k + 1]]

    def span(self, start: int, end: int) -> list[np.ndarray]:
        """Tokens of documents [start, end) as one view per record batch they cover."""
        pieces = []
        b = int(np.searchsorted(self.batch_starts, start, side="right")) - 1
        while start < end:
            values, offsets = self.batch(b)
            first, last = int(self.batch_starts[b]), min(end, int(self.batch_starts[b + 1]))
            pieces.append(values[offsets[start - first] : offsets[last - first]])
            start, b = last, b + 1
        return pieces

    def documents(self) -> Iterator[np.ndarray]:
        for b in range(len(self.batch_starts) - 1):
            values, offsets = self.batch(b)
            for k in range(len(offsets) - 1):
                yield values[offsets[k] : offsets[k + 1]]


class ShardSequence:
    """Documents of several mapped shards as one sequence, indexed globally in shard order."""

    def __init__(self, shards: list[MappedShard]) -> None:
        self._shards = shards
        self._shard_starts = np.cumsum([0] + [len(s.lengths) for s in shards])
        self.lengths = np.concatenate([s.lengths for s in shards]) if shards else np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.lengths)

    def document(self, index: int) -> np.ndarray:
        """Tokens of document `index` (EOS last), a read-only view into the mapped shard."""
        if not 0 <= index < len(self):
            raise IndexError(f"document index {index} out of range for {len(self)} documents")
        shard = int(np.searchsorted(self._shard_starts, index, side="right")) - 1
        return self._shards[shard].document(index - int(self._shard_starts[shard]))

    def span(self, start: int, end: int) -> np.ndarray:
        """Tokens of documents [start, end) in one array, copied a record batch at a time rather than a
        document at a time (laying out a dataset in order)."""
        if not 0 <= start < end <= len(self):
            raise IndexError(f"document range [{start}, {end}) empty or out of range for {len(self)} documents")
        pieces = []
        for shard, shard_start in zip(self._shards, self._shard_starts[:-1].tolist()):
            low, high = max(start, shard_start), min(end, shard_start + len(shard.lengths))
            if low < high:
                pieces += shard.span(low - shard_start, high - shard_start)
        return np.concatenate(pieces)

    def __iter__(self) -> Iterator[np.ndarray]:
        for shard in self._shards:
            yield from shard.documents()

    def ids(self) -> Iterator[pa.Array]:
        """Document ids, one array per record batch, in document order."""
        for shard in self._shards:
            yield from shard.column(_ID)


class TokenDataset(ShardSequence):
    """A token dataset directory, checked against its manifest on open (see the module docstring).

    `tokenizer_sha256`, when given, must match the manifest's (the trainer passes the hash of the tokenizer it
    expects); `verify_checksums` also hashes every shard, catching corruption that keeps the file size.
    """

    def __init__(
        self, directory: str | Path, *, tokenizer_sha256: str | None = None, verify_checksums: bool = False
    ) -> None:
        self.directory = Path(directory)
        self.manifest = read_manifest(self.directory)
        self._check_tokenizer(tokenizer_sha256)
        compressed = self.manifest.compression is not None
        super().__init__([
            MappedShard.open_checked(self.directory / e.file, e, self.manifest.dtype, compressed=compressed,
                                     verify_checksum=verify_checksums)
            for e in self.manifest.shards
        ])
        self._splits: dict[str, np.ndarray] = {}

    def _check_tokenizer(self, expected: str | None) -> None:
        recorded = self.manifest.tokenizer_sha256
        if expected is not None and expected != recorded:
            raise ValueError(f"{self.directory}: tokenized with tokenizer sha256 {recorded}, expected {expected}")
        path = self.tokenizer_path
        if path is None:
            return
        if not path.is_file():
            raise ValueError(f"{path}: tokenizer named in manifest.json is missing")
        if file_sha256(path) != recorded:
            raise ValueError(f"{path}: sha256 differs from manifest.json's {recorded} (wrong tokenizer file)")

    @property
    def tokenizer_path(self) -> Path | None:
        file = self.manifest.tokenizer_file
        return None if file is None else self.directory / file

    @property
    def tokenizer_sha256(self) -> str | None:
        return self.manifest.tokenizer_sha256

    @property
    def vocab_size(self) -> int:
        return self.manifest.vocab_size

    @property
    def eos_id(self) -> int:
        return self.manifest.special_ids.eos

    @property
    def bos_id(self) -> int | None:
        return self.manifest.special_ids.bos

    @property
    def pad_id(self) -> int | None:
        return self.manifest.special_ids.pad

    @property
    def num_tokens(self) -> int:
        return self.manifest.num_tokens

    def split_indices(self, split: Literal["train", "validation"]) -> np.ndarray:
        """Global indices of the documents in `split`, decided by each id's seeded hash (`id_in_fraction`)."""
        if split not in ("train", "validation"):
            raise ValueError(f"split must be 'train' or 'validation', got {split!r}")
        if not self._splits:
            fraction, seed = self.manifest.validation_fraction, self.manifest.seed
            masks = [validation_mask(ids.to_pylist(), validation_fraction=fraction, seed=seed) for ids in self.ids()]
            validation = np.concatenate(masks) if masks else np.zeros(0, bool)
            self._splits = {
                "validation": np.flatnonzero(validation).astype(np.int64),
                "train": np.flatnonzero(~validation).astype(np.int64),
            }
        return self._splits[split]
