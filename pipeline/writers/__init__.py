"""Shard writers: each writes under a temporary name and renames on close, so a file that exists is whole."""

from pathlib import Path

import pyarrow as pa

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.writers.arrow_ipc import ArrowShardWriter
from gristmill.pipeline.writers.atomic import AtomicShardWriter
from gristmill.pipeline.writers.jsonl import JsonlShardWriter
from gristmill.pipeline.writers.parquet import ParquetShardWriter

WRITERS: dict[str, type[AtomicShardWriter]] = {
    "parquet": ParquetShardWriter,
    "jsonl": JsonlShardWriter,
    "arrow": ArrowShardWriter,
}


def open_writer(output_format: str, path_stem: Path, schema: pa.Schema) -> AtomicShardWriter:
    """A writer for `path_stem` + the format's extension."""
    try:
        writer_class = WRITERS[output_format]
    except KeyError:
        raise UserError(f"unknown output format {output_format!r} (valid: {', '.join(WRITERS)})") from None
    return writer_class(path_stem.with_name(path_stem.name + writer_class.extension), schema)
