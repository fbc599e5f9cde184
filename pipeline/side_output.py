"""Side outputs (`removed/`, `errors/`): parquet files that appear only when something is written to them."""

from pathlib import Path

import pyarrow as pa

from gristmill.pipeline.writers.parquet import ParquetShardWriter


class SideOutput:
    """Opens its parquet file on the first write, so clean shards leave no empty side files."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: ParquetShardWriter | None = None

    def write(self, batch: pa.RecordBatch) -> None:
        if self._writer is None:
            self._writer = ParquetShardWriter(self.path, batch.schema)
        self._writer.write(batch)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.abort()
