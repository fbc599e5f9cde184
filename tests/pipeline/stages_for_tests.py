"""Stages used only by the pipeline tests, referenced from recipes as `stages_for_tests:Name`, and a task
function for the executor tests."""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.stage import Filter, ShardContext, Stage, Verdict


@dataclass(kw_only=True)
class MinCharsConfig:
    min_chars: int = 20


class MinChars(Filter):
    """Removes documents shorter than `min_chars` characters."""

    name = "min_chars"
    Config = MinCharsConfig

    def judge(self, batch: pa.RecordBatch) -> Verdict:
        lengths = pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False)
        return Verdict(lengths >= self.config.min_chars, "too_short", pa.array(lengths.astype(np.float64)))


@dataclass(kw_only=True)
class DieOnceConfig:
    shard: int = 1
    flag_file: str = ""


class DieOnce(Stage):
    """Kills its own worker process on `shard` the first time (the flag file remembers), like a lost node."""

    name = "die_once"
    Config = DieOnceConfig

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        flag = Path(self.config.flag_file)
        if ctx.shard == self.config.shard and not flag.exists():
            flag.write_text("died\n")
            os._exit(1)
        return batch


class CrashOnEnv(Stage):
    """Kills the whole run at shard GRISTMILL_TEST_CRASH_SHARD, to test resuming an interrupted run."""

    name = "crash_on_env"

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        if str(ctx.shard) == os.environ.get("GRISTMILL_TEST_CRASH_SHARD"):
            os._exit(3)
        return batch


class KeepAsArrow(Stage):
    """Passes documents through and makes its segment write Arrow IPC shards (as the tokenizer does)."""

    name = "keep_as_arrow"
    output_format = "arrow"

    def process(self, batch: pa.RecordBatch, ctx: ShardContext) -> pa.RecordBatch:
        return batch


def thread_pool_sizes(_task: object) -> dict[str, str | None]:
    """What an executor's worker sees of the thread-pool variables (a task function for executor tests)."""
    return {name: os.environ.get(name) for name in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS")}
