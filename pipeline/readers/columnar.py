"""Turns a batch from a columnar file (Parquet, Arrow IPC) into the document schema.

Columns beyond the schema are kept as typed columns (a later stage's `lang`, `quality`, ...), so
reading a previous stage's output loses nothing.
"""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import fsspec
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.readers.base import InputConfig, ReadErrors


def to_documents(
    batch: pa.RecordBatch, config: InputConfig, path: str, name: str, first_row: int, errors: ReadErrors
) -> pa.RecordBatch | None:
    """Renames the configured fields, fills missing ids/source/metadata, and sets aside rows without text.

    Returns None when the file has no text column at all (every row is then an error).
    """
    if config.text_field not in batch.schema.names:
        message = f"no column {config.text_field!r} (columns: {', '.join(batch.schema.names)})"
        errors.add(path, first_row, "missing_text", message, b"", count=batch.num_rows)
        return None
    text = batch.column(config.text_field).cast(pa.large_string())
    if text.null_count:
        for row in pc.indices_nonzero(pc.is_null(text)).to_pylist():
            errors.add(path, first_row + row, "missing_text", f"null {config.text_field!r}", b"")
        valid = pc.is_valid(text)
        batch, text = batch.filter(valid), text.filter(valid)
        kept_rows = pc.indices_nonzero(valid)
    else:
        kept_rows = None
    rows = batch.num_rows
    if config.id_field in batch.schema.names:
        ids = batch.column(config.id_field).cast(pa.string())
    else:
        numbers = kept_rows.to_pylist() if kept_rows is not None else range(rows)
        ids = pa.array([f"{name}:{first_row + i}" for i in numbers], pa.string())
    source = (
        batch.column("source").cast(pa.string())
        if "source" in batch.schema.names
        else pa.array([config.source or name] * rows, pa.string())
    )
    metadata = (
        batch.column("metadata").cast(pa.string()) if "metadata" in batch.schema.names else pa.array(["{}"] * rows)
    )
    core = {config.text_field, config.id_field, "text", "id", "source", "metadata"}
    extra = [(field, batch.column(field.name)) for field in batch.schema if field.name not in core]
    names = ["id", "text", "source", "metadata"] + [field.name for field, _ in extra]
    arrays = [ids, text, source, metadata] + [array for _, array in extra]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def read_columnar(
    path: str, config: InputConfig, errors: ReadErrors, batches: Callable[[BinaryIO, int], Iterator[pa.RecordBatch]]
) -> Iterator[pa.RecordBatch]:
    """Streams a columnar file as documents; `batches(handle, batch_size)` reads the format's batches.

    A file that cannot be read past some row is one `corrupt_file` error (the rows before it are kept);
    a file with no rows is one `empty_file` error.
    """
    name = Path(path).name
    row = 0
    try:
        with fsspec.open(path, "rb") as handle:
            for batch in batches(handle, config.batch_size):
                documents = to_documents(batch, config, path, name, row, errors)
                row += batch.num_rows
                if documents is not None and documents.num_rows:
                    yield documents
    except (OSError, pa.ArrowException) as err:
        errors.add(path, row, "corrupt_file", f"{type(err).__name__}: {err}", b"")
        return
    if row == 0:
        errors.add(path, 0, "empty_file", "the file holds no rows", b"")
