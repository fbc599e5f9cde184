"""One unit of work: one input file through a segment of stages into one output shard.

A task is a pure function of its fields (STYLE.md pattern 4): the same task always writes the same
bytes, outputs appear by rename, and the completion marker is written last and checked on resume.
"""

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.pipeline.readers import InputConfig, ReadErrors, read_documents
from gristmill.pipeline.registry import resolve_stage
from gristmill.pipeline.side_output import SideOutput
from gristmill.pipeline.stage import ShardContext, Stage
from gristmill.pipeline.stats import StageStats, shard_stats_path, write_json_atomic
from gristmill.pipeline.writers import open_writer
from gristmill.pipeline.writers.atomic import AtomicShardWriter, remove_stale_temporaries


@dataclass(frozen=True)
class StageSpec:
    """A stage as the recipe names it; picklable, so it travels to workers and is built there."""

    name: str
    type: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)

    def key(self) -> str:
        return json.dumps([self.name, self.type, self.options], sort_keys=True, default=str)

    def build(self) -> Stage:
        from gristmill.pipeline.config import build_config

        stage_class = resolve_stage(self.type)
        config = build_config(stage_class.Config, dict(self.options), where=f"stage {self.name!r}")
        return stage_class(config)


@dataclass(frozen=True)
class ShardTask:
    shard: int
    input_path: str
    input: InputConfig
    stages: tuple[StageSpec, ...]
    out_dir: str
    output_format: str
    keep_removed: bool
    read_stage: str | None = "read"
    """Folder for the reader's stats and errors/; None when the input is a previous stage's output."""

    @property
    def output_dir(self) -> Path:
        return Path(self.out_dir) / (self.stages[-1].name if self.stages else self.read_stage or "read")

    @property
    def part(self) -> str:
        return f"part-{self.shard:05d}"


@dataclass
class ShardResult:
    shard: int
    output: str | None
    rows: int
    docs: int
    skipped: bool


_stage_cache: dict[str, Stage] = {}


def _stage(spec: StageSpec) -> Stage:
    """Stages are built and set up once per worker process, not once per shard."""
    key = spec.key()
    if key not in _stage_cache:
        stage = spec.build()
        stage.setup()
        _stage_cache[key] = stage
    return _stage_cache[key]


def marker_path(task: ShardTask) -> Path:
    return task.output_dir / "done" / f"{task.part}.json"


def completed(task: ShardTask) -> ShardResult | None:
    """The result of an earlier run of this task, if its marker exists and its output checks out."""
    marker = marker_path(task)
    if not marker.is_file():
        return None
    info = json.loads(marker.read_text(encoding="utf-8"))
    output = info.get("output")
    if output is not None and _rows_in(task.output_dir / output) != info["rows"]:
        return None
    return ShardResult(task.shard, output, info["rows"], info["docs"], skipped=True)


def _rows_in(path: Path) -> int | None:
    """Rows of a finished output file, read from its footer; None when it is missing or unreadable."""
    try:
        if path.suffix == ".parquet":
            return pq.read_metadata(path).num_rows
        if path.suffix == ".arrow":
            with pa.memory_map(str(path)) as source:
                reader = pa.ipc.open_file(source)
                return sum(reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
        return sum(1 for _ in path.open("rb")) if path.suffix == ".jsonl" else None
    except (OSError, pa.ArrowException):
        return None


def run_shard(task: ShardTask) -> ShardResult:
    """Reads one input file, runs the stages batch by batch, writes one output shard and its stats."""
    previous = completed(task)
    if previous is not None:
        return previous
    started = time.perf_counter()
    out_dir = Path(task.out_dir)
    stages = [_stage(spec) for spec in task.stages]
    contexts = [_context(task, out_dir / spec.name) for spec in task.stages]
    read_stats = StageStats(stage=task.read_stage or "read", shards=1)
    error_output = SideOutput(out_dir / task.read_stage / "errors" / f"{task.part}.parquet") if task.read_stage else None
    writer: AtomicShardWriter | None = None
    side_outputs = [ctx.removed_output for ctx in contexts if ctx.removed_output] + [error_output]
    try:
        for batch in read_documents(task.input_path, task.input, ReadErrors(read_stats, error_output)):
            read_stats.count_in(batch)
            read_stats.count_out(batch)
            for stage, ctx in zip(stages, contexts):
                stage_started = time.perf_counter()
                ctx.stats.count_in(batch)
                batch = stage.process(batch, ctx)
                ctx.stats.count_out(batch)
                ctx.stats.wall_s += time.perf_counter() - stage_started
                if batch.num_rows == 0:
                    break
            if batch.num_rows:
                if writer is None:
                    remove_stale_temporaries(task.output_dir, f"{task.part}.{task.output_format}")
                    writer = open_writer(task.output_format, task.output_dir / task.part, batch.schema)
                writer.write(batch)
    except BaseException:
        for output in side_outputs:
            if output is not None:
                output.abort()
        if writer is not None:
            writer.abort()
        raise
    for output in side_outputs:
        if output is not None:
            output.close()
    output_name = writer.close().name if writer is not None else None
    rows = writer.rows if writer is not None else 0
    read_stats.wall_s = time.perf_counter() - started
    if task.read_stage:
        _save_stats(out_dir / task.read_stage, task.shard, read_stats)
    for spec, ctx in zip(task.stages, contexts):
        _save_stats(out_dir / spec.name, task.shard, ctx.stats)
    write_json_atomic(marker_path(task), {"output": output_name, "rows": rows, "docs": read_stats.docs_in})
    return ShardResult(task.shard, output_name, rows, read_stats.docs_in, skipped=False)


def _context(task: ShardTask, stage_dir: Path) -> ShardContext:
    removed = SideOutput(stage_dir / "removed" / f"{task.part}.parquet") if task.keep_removed else None
    return ShardContext(task.shard, stage_dir, StageStats(stage=stage_dir.name, shards=1), removed)


def _save_stats(stage_dir: Path, shard: int, stats: StageStats) -> None:
    stats.check_balance()
    write_json_atomic(shard_stats_path(stage_dir, shard), stats.to_dict())
