"""Arrow IPC reader (file or stream format), batch by batch."""

from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa

from gristmill.pipeline.readers.base import InputConfig, ReadErrors
from gristmill.pipeline.readers.columnar import to_documents


def read_arrow(path: str, config: InputConfig, errors: ReadErrors) -> Iterator[pa.RecordBatch]:
    name = Path(path).name
    row = 0
    try:
        with fsspec.open(path, "rb") as handle:
            for batch in _batches(handle):
                documents = to_documents(batch, config, path, name, row, errors)
                row += batch.num_rows
                if documents is not None and documents.num_rows:
                    yield documents
    except (OSError, pa.ArrowException) as err:
        errors.add(path, row, "corrupt_file", f"{type(err).__name__}: {err}", b"")
        return
    if row == 0:
        errors.add(path, 0, "empty_file", "the file holds no rows", b"")


def _batches(handle) -> Iterator[pa.RecordBatch]:
    """Batches of an IPC file, falling back to the stream format when the file footer is absent."""
    try:
        reader = pa.ipc.open_file(handle)
    except pa.ArrowInvalid:
        handle.seek(0)
        yield from pa.ipc.open_stream(handle)
        return
    for index in range(reader.num_record_batches):
        yield reader.get_batch(index)
