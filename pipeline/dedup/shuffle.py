"""The shuffle between phases: map task m writes `map-m/part-p.arrow` for every partition p, and reduce
task p reads `part-p` of every map task.

Files are uncompressed Arrow IPC, written under a temporary name and renamed; every map task writes
all its partition files, empty ones included, so a reducer can tell a lost file from an empty one.
"""

from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.writers import open_writer
from gristmill.pipeline.writers.atomic import AtomicShardWriter, remove_stale_temporaries


def partition_file(shuffle_dir: Path, map_task: int, partition: int) -> Path:
    return shuffle_dir / f"map-{map_task:05d}" / f"part-{partition:05d}.arrow"


class PartitionedWriter:
    """Streams one map task's rows into one file per partition (a file with no rows holds the schema)."""

    def __init__(self, shuffle_dir: Path, map_task: int, partitions: int, schema: pa.Schema) -> None:
        self.shuffle_dir = shuffle_dir
        paths = [partition_file(shuffle_dir, map_task, p) for p in range(partitions)]
        for path in paths:
            remove_stale_temporaries(path.parent, path.name)
        self._writers: list[AtomicShardWriter] = [open_writer("arrow", path.with_suffix(""), schema) for path in paths]

    def write(self, batch: pa.RecordBatch, partition: np.ndarray) -> None:
        """Appends each row of `batch` to the file of its partition (an int array, one per row)."""
        if batch.num_rows == 0:
            return
        order = np.argsort(partition, kind="stable")
        bounds = np.searchsorted(partition[order], np.arange(len(self._writers) + 1))
        grouped = batch.take(pa.array(order))
        for p, writer in enumerate(self._writers):
            if bounds[p + 1] > bounds[p]:
                writer.write(grouped.slice(bounds[p], bounds[p + 1] - bounds[p]))

    def close(self) -> list[str]:
        """Publishes every partition file; returns their paths relative to the shuffle folder."""
        return [str(writer.close().relative_to(self.shuffle_dir)) for writer in self._writers]

    def abort(self) -> None:
        for writer in self._writers:
            writer.abort()


def read_partition(shuffle_dir: Path, map_tasks: int, partition: int) -> pa.Table:
    """Partition `partition` of every map task, concatenated in map-task order."""
    tables = []
    for map_task in range(map_tasks):
        path = partition_file(shuffle_dir, map_task, partition)
        if not path.is_file():
            raise FileNotFoundError(f"shuffle file {path} is missing: rerun the stage to rebuild it")
        tables.append(read_arrow(path))
    return pa.concat_tables(tables)


def read_arrow(path: Path) -> pa.Table:
    """An Arrow IPC file as a table backed by a memory map (no copy; pages load as they are touched)."""
    return pa.ipc.open_file(pa.memory_map(str(path))).read_all()
