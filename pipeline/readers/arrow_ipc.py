"""Arrow IPC reader (file or stream format), batch by batch."""

from collections.abc import Iterator
from typing import BinaryIO

import pyarrow as pa

from gristmill.pipeline.readers.base import InputConfig, ReadErrors
from gristmill.pipeline.readers.columnar import read_columnar


def read_arrow(path: str, config: InputConfig, errors: ReadErrors) -> Iterator[pa.RecordBatch]:
    yield from read_columnar(path, config, errors, _batches)


def _batches(handle: BinaryIO, batch_size: int) -> Iterator[pa.RecordBatch]:
    """Batches of an IPC file, falling back to the stream format when the file footer is absent.

    IPC batches are read as written (`batch_size` applies to formats that can re-chunk cheaply)."""
    try:
        reader = pa.ipc.open_file(handle)
    except pa.ArrowInvalid:
        handle.seek(0)
        yield from pa.ipc.open_stream(handle)
        return
    for index in range(reader.num_record_batches):
        yield reader.get_batch(index)
