"""The last phase of every dedup: drop the listed rows of each shard and publish what is left.

Earlier phases decide, per duplicate group, one document to keep; they write a removal list of
`(doc, cluster, remove)` rows (every member of every group, the kept one with remove=False),
partitioned by the shard of `doc`. One task per shard then filters its documents, sends the removed
ones to `removed/` with the cluster (the kept document's key) in `value`, and writes `clusters/`
(`id`, `cluster`, `kept`) so groups can be inspected by document id.
"""

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.doc_keys import row_of
from gristmill.pipeline.dedup.phase import Summary, marker_path, resumable
from gristmill.pipeline.dedup.shard_io import ShardOutput, read_shard
from gristmill.pipeline.dedup.shuffle import read_partition
from gristmill.pipeline.executors import Executor
from gristmill.pipeline.stats import merge_stage_stats
from gristmill.pipeline.writers.parquet import ParquetShardWriter

REMOVAL_SCHEMA = pa.schema([("doc", pa.uint64()), ("cluster", pa.uint64()), ("remove", pa.bool_())])
CLUSTER_SCHEMA = pa.schema([("id", pa.string()), ("cluster", pa.int64()), ("kept", pa.bool_())])


@dataclass(frozen=True)
class ApplyTask:
    shard: int
    input_path: str
    stage_dir: str
    removals_dir: str
    producers: int
    """How many tasks wrote removal lists (each wrote one file per shard)."""
    reason: str
    batch_size: int
    keep_removed: bool

    @property
    def marker(self) -> Path:
        return marker_path(self.stage_dir, self.shard)


@dataclass
class ShardRemovals:
    """The removal list of one shard as arrays indexed by row: cluster key, or -1 for docs in no group."""

    cluster: np.ndarray
    remove: np.ndarray

    @classmethod
    def load(cls, task: ApplyTask) -> "ShardRemovals":
        table = read_partition(Path(task.removals_dir), task.producers, task.shard)
        rows = row_of(table.column("doc").to_numpy())
        size = int(rows.max()) + 1 if len(rows) else 0
        cluster = np.full(size, -1, dtype=np.int64)
        remove = np.zeros(size, dtype=bool)
        cluster[rows] = table.column("cluster").to_numpy().astype(np.int64)
        remove[rows] = table.column("remove").to_numpy(zero_copy_only=False)
        return cls(cluster, remove)

    def slice(self, first_row: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(cluster, remove) for rows first_row .. first_row + count, padded past the listed rows."""
        cluster = np.full(count, -1, dtype=np.int64)
        remove = np.zeros(count, dtype=bool)
        listed = max(0, min(count, len(self.cluster) - first_row))
        cluster[:listed] = self.cluster[first_row : first_row + listed]
        remove[:listed] = self.remove[first_row : first_row + listed]
        return cluster, remove


@resumable
def apply_removals(task: ApplyTask) -> Summary:
    started = time.perf_counter()
    stage_dir = Path(task.stage_dir)
    removals = ShardRemovals.load(task)
    output = ShardOutput(stage_dir, task.shard, task.keep_removed)
    clusters_path = stage_dir / "clusters" / f"part-{task.shard:05d}.parquet"
    clusters = ParquetShardWriter(clusters_path, CLUSTER_SCHEMA)
    try:
        for first_row, batch in read_shard(task.input_path, task.batch_size, output.stats):
            output.stats.count_in(batch)
            cluster, remove = removals.slice(first_row, batch.num_rows)
            grouped = cluster >= 0
            clusters.write(
                pa.RecordBatch.from_arrays(
                    [batch.column("id").filter(pa.array(grouped)), pa.array(cluster[grouped]),
                     pa.array(~remove[grouped])],
                    schema=CLUSTER_SCHEMA,
                )
            )
            dropped = pa.array(remove)
            output.context.remove(batch.filter(dropped), task.reason, pa.array(cluster[remove].astype(np.float64)))
            output.keep(batch.filter(pa.array(~remove)))
    except BaseException:
        output.abort()
        clusters.abort()
        raise
    files = output.close(time.perf_counter() - started)
    clusters.close()
    return {"files": [*files, f"clusters/{clusters_path.name}"], "kept": files}


def apply_removals_to_shards(
    executor: Executor, inputs: list[Path], stage_dir: Path, removals_dir: Path, producers: int,
    reason: str, batch_size: int, keep_removed: bool,
) -> list[Path]:
    """Runs the filter phase over every input shard; returns the kept shards and merges the stats."""
    tasks = [
        ApplyTask(shard, str(path), str(stage_dir), str(removals_dir), producers, reason, batch_size, keep_removed)
        for shard, path in enumerate(inputs)
    ]
    summaries = executor.map(apply_removals, tasks, description=f"{stage_dir.name}: filter")
    merge_stage_stats(stage_dir)
    return [stage_dir / name for summary in summaries for name in summary["kept"]]
