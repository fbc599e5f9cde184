"""Arrow IPC file writer, uncompressed so readers can memory-map it zero-copy (token shards)."""

from pathlib import Path

import pyarrow as pa

from gristmill.pipeline.writers.atomic import AtomicShardWriter


class ArrowShardWriter(AtomicShardWriter):
    extension = ".arrow"

    def _open(self, tmp_path: Path) -> None:
        self._sink = pa.OSFile(str(tmp_path), "wb")
        self._writer = pa.ipc.new_file(self._sink, self.schema)

    def _write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)

    def _close(self) -> None:
        self._writer.close()
        self._sink.close()
