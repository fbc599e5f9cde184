"""Parquet reader: row groups streamed as record batches, never the whole file."""

from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.pipeline.readers.base import InputConfig, ReadErrors
from gristmill.pipeline.readers.columnar import read_columnar


def read_parquet(path: str, config: InputConfig, errors: ReadErrors) -> Iterator[pa.RecordBatch]:
    yield from read_columnar(path, config, errors, _batches)


def _batches(handle: BinaryIO, batch_size: int) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(handle).iter_batches(batch_size=batch_size)
