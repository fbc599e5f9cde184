"""Parquet shard writer (zstd), the default format between stages."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.pipeline.writers.atomic import AtomicShardWriter


class ParquetShardWriter(AtomicShardWriter):
    extension = ".parquet"

    def _open(self, tmp_path: Path) -> None:
        self._writer = pq.ParquetWriter(tmp_path, self.schema, compression="zstd")

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def _close(self) -> None:
        self._writer.close()
