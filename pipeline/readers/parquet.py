"""Parquet reader: row groups streamed as record batches, never the whole file."""

from collections.abc import Iterator
from pathlib import Path

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.pipeline.readers.base import InputConfig, ReadErrors
from gristmill.pipeline.readers.columnar import to_documents


def read_parquet(path: str, config: InputConfig, errors: ReadErrors) -> Iterator[pa.RecordBatch]:
    name = Path(path).name
    row = 0
    try:
        with fsspec.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            if parquet.metadata.num_rows == 0:
                errors.add(path, 0, "empty_file", "the file holds no rows", b"")
                return
            for batch in parquet.iter_batches(batch_size=config.batch_size):
                documents = to_documents(batch, config, path, name, row, errors)
                row += batch.num_rows
                if documents is not None and documents.num_rows:
                    yield documents
    except (OSError, pa.ArrowException) as err:
        errors.add(path, row, "corrupt_file", f"{type(err).__name__}: {err}", b"")
