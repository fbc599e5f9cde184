"""Where a run folder keeps each stage's outputs, and streaming reads of a few of their columns.

Nothing here loads a whole file: parquet is read in record batches of the named columns only, and token
shards are memory-mapped Arrow IPC files read column by column.
"""

import json
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

BATCH_ROWS = 4096


def kept_files(stage_dir: Path) -> list[Path]:
    """The documents a stage kept (absent when the stage ran fused with later ones)."""
    return sorted(stage_dir.glob("part-*.parquet"))


def removed_files(stage_dir: Path) -> list[Path]:
    return sorted((stage_dir / "removed").glob("part-*.parquet"))


def error_files(stage_dir: Path) -> list[Path]:
    return sorted((stage_dir / "errors").glob("part-*.parquet"))


def cluster_files(stage_dir: Path) -> list[Path]:
    """Dedup stages' `clusters/` tables: (id, cluster, kept) for every document in a duplicate group."""
    return sorted((stage_dir / "clusters").glob("part-*.parquet"))


def token_files(stage_dir: Path) -> list[Path]:
    """A tokenize stage's shards: the final dataset's when its manifest exists, else the per-input shards."""
    manifest = read_manifest(stage_dir)
    if manifest is not None:
        return [stage_dir / "dataset" / shard["file"] for shard in manifest.get("shards", [])]
    return sorted(stage_dir.glob("part-*.arrow"))


def read_manifest(stage_dir: Path) -> dict | None:
    path = stage_dir / "dataset" / "manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def has_columns(path: Path, columns: list[str]) -> bool:
    return all(name in pq.read_schema(path).names for name in columns)


def iter_columns(files: list[Path], columns: list[str], batch_rows: int = BATCH_ROWS) -> Iterator[pa.RecordBatch]:
    """Record batches of `columns` from every parquet file that has all of them, one batch in memory at a time."""
    for path in files:
        if has_columns(path, columns):
            yield from pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns)


def iter_token_counts(path: Path) -> Iterator[pa.Array]:
    """The `num_tokens` column of one token shard, batch by batch, from a memory map."""
    with pa.memory_map(str(path)) as source:
        reader = pa.ipc.open_file(source)
        for index in range(reader.num_record_batches):
            yield reader.get_batch(index).column("num_tokens")
