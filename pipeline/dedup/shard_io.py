"""Reading an input shard with stable row numbers, and writing one output shard of a dedup stage.

Every phase that reads shard i sees the same batches in the same order, so `(shard, row)` names a
document across phases without carrying its string id through the shuffles.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from gristmill.pipeline.readers import InputConfig, ReadErrors, read_documents
from gristmill.pipeline.side_output import SideOutput
from gristmill.pipeline.stage import ShardContext
from gristmill.pipeline.stats import StageStats, shard_stats_path, write_json_atomic
from gristmill.pipeline.writers import open_writer
from gristmill.pipeline.writers.atomic import AtomicShardWriter, remove_stale_temporaries


def read_shard(path: str, batch_size: int, stats: StageStats | None = None) -> Iterator[tuple[int, pa.RecordBatch]]:
    """(first row, batch) over one document shard; unreadable records count as errors in `stats`."""
    errors = ReadErrors(stats if stats is not None else StageStats(stage="dedup"), None)
    row = 0
    for batch in read_documents(path, InputConfig(batch_size=batch_size), errors):
        yield row, batch
        row += batch.num_rows


def no_documents(stage_dir: Path) -> list[Path]:
    """The outcome of a dedup stage given no input shards (an earlier stage removed everything)."""
    write_json_atomic(stage_dir / "stats.json", StageStats(stage=stage_dir.name).to_dict())
    return []


@dataclass
class ShardOutput:
    """The kept documents, the `removed/` side output and the stats of one shard of a dedup stage."""

    stage_dir: Path
    shard: int
    keep_removed: bool

    def __post_init__(self) -> None:
        part = f"part-{self.shard:05d}"
        removed = SideOutput(self.stage_dir / "removed" / f"{part}.parquet") if self.keep_removed else None
        self.context = ShardContext(self.shard, self.stage_dir, StageStats(stage=self.stage_dir.name, shards=1), removed)
        self._writer: AtomicShardWriter | None = None
        self._part = part

    @property
    def stats(self) -> StageStats:
        return self.context.stats

    def keep(self, batch: pa.RecordBatch) -> None:
        self.stats.count_out(batch)
        if batch.num_rows == 0:
            return
        if self._writer is None:
            remove_stale_temporaries(self.stage_dir, f"{self._part}.parquet")
            self._writer = open_writer("parquet", self.stage_dir / self._part, batch.schema)
        self._writer.write(batch)

    def close(self, wall_s: float) -> list[str]:
        """Publishes the shard; returns the files written, relative to the stage folder."""
        if self.context.removed_output is not None:
            self.context.removed_output.close()
        self.stats.wall_s = wall_s
        self.stats.check_balance()
        write_json_atomic(shard_stats_path(self.stage_dir, self.shard), self.stats.to_dict())
        if self._writer is None:
            return []
        return [self._writer.close().name]

    def abort(self) -> None:
        if self.context.removed_output is not None:
            self.context.removed_output.abort()
        if self._writer is not None:
            self._writer.abort()
