"""JSONL shard writer: one JSON object per document, for hand-off to tools that want text."""

from pathlib import Path

import pyarrow as pa
import orjson

from gristmill.pipeline.writers.atomic import AtomicShardWriter


class JsonlShardWriter(AtomicShardWriter):
    extension = ".jsonl"

    def _open(self, tmp_path: Path) -> None:
        self._file = open(tmp_path, "wb")

    def _write(self, batch: pa.RecordBatch) -> None:
        columns = {name: batch.column(name).to_pylist() for name in batch.schema.names}
        lines = [
            orjson.dumps({name: values[row] for name, values in columns.items()})
            for row in range(batch.num_rows)
        ]
        self._file.write(b"\n".join(lines) + b"\n")

    def _close(self) -> None:
        self._file.close()
