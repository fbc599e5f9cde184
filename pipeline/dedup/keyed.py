"""Keep one document per key: the shared engine of exact and URL dedup.

Phases: (1) per shard, hash each document to a key with a priority and write `(key, priority, doc)`
partitioned by key; (2) per partition, sort, and in each group of equal keys keep the highest
priority (ties: the earliest document), writing removal lists partitioned by shard; (3) filter
every shard (`removal.py`). No phase holds more than one shard or one partition.
"""

from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.doc_keys import doc_keys, shard_of
from gristmill.pipeline.dedup.phase import Summary, check_plan, marker_path, resumable
from gristmill.pipeline.dedup.removal import REMOVAL_SCHEMA, apply_removals_to_shards
from gristmill.pipeline.dedup.segments import group_starts
from gristmill.pipeline.dedup.shard_io import no_documents, read_shard
from gristmill.pipeline.dedup.shuffle import PartitionedWriter, read_partition
from gristmill.pipeline.executors import Executor
from gristmill.pipeline.stage import GlobalStage

KEY_SCHEMA = pa.schema([("key", pa.uint64()), ("priority", pa.float64()), ("doc", pa.uint64())])


@dataclass
class DocumentKeys:
    """Per row of a batch: its key, whether it has one (rows without are never duplicates), its priority."""

    key: np.ndarray
    valid: np.ndarray
    priority: np.ndarray


class KeyedDedup(GlobalStage):
    """Base of dedups that group documents by one hashed key. Subclasses implement `document_keys`."""

    reason: ClassVar[str]

    @abstractmethod
    def document_keys(self, batch: pa.RecordBatch) -> DocumentKeys:
        """The key of every row; larger priority wins inside a group."""

    def run(self, inputs: list[Path], stage_dir: Path, executor: Executor, keep_removed: bool) -> list[Path]:
        if not inputs:
            return no_documents(stage_dir)
        check_plan(stage_dir, inputs, self.config)
        keys_dir, removals_dir = stage_dir / "work" / "keys", stage_dir / "work" / "removals"
        partitions = self.config.partitions
        executor.map(
            write_keys,
            [KeyTask(self, shard, str(path), str(keys_dir), partitions) for shard, path in enumerate(inputs)],
            description=f"{stage_dir.name}: keys",
        )
        executor.map(
            pick_keepers,
            [PickTask(p, str(keys_dir), str(removals_dir), len(inputs)) for p in range(partitions)],
            description=f"{stage_dir.name}: groups",
        )
        return apply_removals_to_shards(
            executor, inputs, stage_dir, removals_dir, partitions, self.reason, self.config.batch_size, keep_removed
        )


@dataclass(frozen=True)
class KeyTask:
    stage: KeyedDedup
    shard: int
    input_path: str
    keys_dir: str
    partitions: int

    @property
    def marker(self) -> Path:
        return marker_path(self.keys_dir, self.shard)


@resumable
def write_keys(task: KeyTask) -> Summary:
    writer = PartitionedWriter(Path(task.keys_dir), task.shard, task.partitions, KEY_SCHEMA)
    try:
        for first_row, batch in read_shard(task.input_path, task.stage.config.batch_size):
            keys = task.stage.document_keys(batch)
            docs = doc_keys(task.shard, first_row, batch.num_rows)[keys.valid]
            key = keys.key[keys.valid]
            rows = pa.RecordBatch.from_arrays(
                [pa.array(key), pa.array(keys.priority[keys.valid].astype(np.float64)), pa.array(docs)],
                schema=KEY_SCHEMA,
            )
            writer.write(rows, (key % np.uint64(task.partitions)).astype(np.int64))
    except BaseException:
        writer.abort()
        raise
    return {"files": writer.close()}


@dataclass(frozen=True)
class PickTask:
    partition: int
    keys_dir: str
    removals_dir: str
    shards: int

    @property
    def marker(self) -> Path:
        return marker_path(self.removals_dir, self.partition)


@resumable
def pick_keepers(task: PickTask) -> Summary:
    table = read_partition(Path(task.keys_dir), task.shards, task.partition)
    key = table.column("key").to_numpy()
    priority = table.column("priority").to_numpy()
    doc = table.column("doc").to_numpy()
    order = np.lexsort((doc, -priority, key))
    key, doc = key[order], doc[order]
    first = group_starts(key)
    group = np.cumsum(first) - 1
    size = np.bincount(group)
    member = size[group] > 1
    keeper = doc[first][group]
    rows = pa.RecordBatch.from_arrays(
        [pa.array(doc[member]), pa.array(keeper[member]), pa.array(~first[member])], schema=REMOVAL_SCHEMA
    )
    writer = PartitionedWriter(Path(task.removals_dir), task.partition, task.shards, REMOVAL_SCHEMA)
    writer.write(rows, shard_of(doc[member]))
    return {
        "files": writer.close(),
        "groups": int((size > 1).sum()),
        "removed": int((~first[member]).sum()),
    }
