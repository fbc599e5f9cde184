"""Write-then-rename: the one mechanism that makes a shard file's existence mean it is complete."""

import os
import uuid
from abc import ABC, abstractmethod
from pathlib import Path

import pyarrow as pa


class AtomicShardWriter(ABC):
    """Streams record batches into `<dir>/.<name>.<uuid>.tmp` and renames it to `path` on `close`."""

    extension: str

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp_path = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}.tmp")
        self._open(self.tmp_path)

    def write(self, batch: pa.RecordBatch) -> None:
        if batch.num_rows == 0:
            return
        if batch.schema != self.schema:
            batch = batch.cast(self.schema)
        self._write(batch)
        self.rows += batch.num_rows

    def close(self) -> Path:
        self._close()
        os.replace(self.tmp_path, self.path)
        return self.path

    def abort(self) -> None:
        self._close()
        self.tmp_path.unlink(missing_ok=True)

    @abstractmethod
    def _open(self, tmp_path: Path) -> None: ...

    @abstractmethod
    def _write(self, batch: pa.RecordBatch) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...


def remove_stale_temporaries(directory: Path, name: str) -> None:
    """Deletes temporaries a killed attempt left for shard file `name` (they are never valid output)."""
    for stale in directory.glob(f".{name}.*.tmp"):
        stale.unlink(missing_ok=True)
