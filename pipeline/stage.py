"""The stage protocol: a config dataclass and one method on a record batch.

A `Stage` transforms documents shard by shard (filters, annotators, the tokenizer). A `Filter` only
decides which rows to keep and why; its base class does the splitting, counting and side output, so
every filter gets identical stats and `removed/` files. A `GlobalStage` (dedup) needs all shards at
once and runs its own phases through the executor.
"""

import importlib.util
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.side_output import SideOutput
from gristmill.pipeline.stats import StageStats

if TYPE_CHECKING:
    from gristmill.pipeline.executors.base import Executor


@dataclass(kw_only=True)
class NoOptions:
    """The config of a stage that takes no options."""


@dataclass
class ShardContext:
    """What a stage sees of the shard it is processing: its stats and its side output."""

    shard: int
    stage_dir: Path
    stats: StageStats
    removed_output: SideOutput | None

    def remove(self, rows: pa.RecordBatch, reason: pa.Array | str, value: pa.Array | None = None) -> None:
        """Counts `rows` as removed, per reason, and keeps them in `removed/` when that output is on."""
        if rows.num_rows == 0:
            return
        reasons = pa.array([reason] * rows.num_rows, pa.string()) if isinstance(reason, str) else reason
        for item in reasons.value_counts().to_pylist():
            self.stats.removed[item["values"]] += item["counts"]
        if self.removed_output is not None:
            values = value if value is not None else pa.nulls(rows.num_rows, pa.float64())
            self.removed_output.write(
                rows.append_column("reason", reasons.cast(pa.string())).append_column(
                    "value", values.cast(pa.float64())
                )
            )


class Stage(ABC):
    """One pipeline step. Subclasses set `name` and `Config` and implement `process`."""

    name: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    requires: ClassVar[tuple[str, ...]] = ()
    output_format: ClassVar[str | None] = None

    def __init__(self, config: Any = None) -> None:
        missing = [module for module in self.requires if importlib.util.find_spec(module) is None]
        if missing:
            raise UserError(
                f"stage {self.name!r} needs {', '.join(missing)}: pip install {' '.join(missing)}"
            )
        self.config = config if config is not None else self.Config()

    def setup(self) -> None:
        """Loads models and other heavy state once per worker process, before the first batch."""

    @abstractmethod
    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        """Returns the documents that go on; removed ones are reported through `ctx.remove`."""

    def finalize(self, stage_dir: Path, outputs: list[Path]) -> None:
        """Runs once on the driver after every shard is done (e.g. to write a manifest)."""

    def is_finalized(self, stage_dir: Path) -> bool:
        """Whether an earlier run's `finalize` result is in `stage_dir` and checks out; a rerun then skips the
        stage's segment. A stage whose `finalize` deletes its shard outputs needs this to resume."""
        return False


@dataclass
class Verdict:
    """A filter's decision for each row of a batch: keep or not, and for removed rows why and by how much."""

    keep: np.ndarray
    reason: pa.Array | str
    value: pa.Array | None = None


def apply_verdict(
    batch: pa.RecordBatch, verdict: Verdict, ctx: ShardContext, output: pa.RecordBatch | None = None
) -> pa.RecordBatch:
    """Reports the removed rows of `batch` to `ctx` and returns the kept rows of `output` (default `batch`).

    `output` serves stages that also change what they keep (new columns, rewritten text): it is the changed
    batch, row for row, while `removed/` holds the rows of `batch`.
    """
    keep = pa.array(np.asarray(verdict.keep, dtype=bool))
    drop = pc.invert(keep)
    reason = verdict.reason if isinstance(verdict.reason, str) else verdict.reason.filter(drop)
    value = verdict.value.filter(drop) if verdict.value is not None else None
    ctx.remove(batch.filter(drop), reason, value)
    return (output if output is not None else batch).filter(keep)


class Filter(Stage):
    """A stage that only removes documents. Subclasses implement `judge`."""

    @abstractmethod
    def judge(self, batch: pa.RecordBatch) -> Verdict:
        """Decides for every row; `reason` may be one string or one string per row."""

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        return apply_verdict(batch, self.judge(batch), ctx)


class GlobalStage(ABC):
    """A stage that needs the whole corpus (dedup): it runs its phases over all input shards at once."""

    name: ClassVar[str]
    Config: ClassVar[type] = NoOptions
    requires: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.Config()

    @abstractmethod
    def run(self, inputs: list[Path], stage_dir: Path, executor: "Executor", keep_removed: bool) -> list[Path]:
        """Reads document shards `inputs`, writes kept shards and stats under `stage_dir`, returns them.

        Must skip phases and shards that a previous run completed, and write `stage_dir/stats.json`.
        """
