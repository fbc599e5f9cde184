"""Line-level dedup (C4 / datatrove style): drop lines, or spans of sentences, that recur in many documents.

Boilerplate (cookie banners, navigation, legal footers) repeats across documents while real content
rarely does. Phases: (1) per shard, hash every span of `span` consecutive units (lines or sentences)
and count in how many documents each occurs; (2) per partition, sum the counts and keep the spans
seen in at least `min_count` documents; (3) per shard, delete every unit covered by such a span.
A document left with no text is removed with reason "duplicate_lines"; the others go on shortened.
"""

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from gristmill.pipeline.dedup.normalize import TextNormalization, normalize_text
from gristmill.pipeline.dedup.options import ShuffleOptions
from gristmill.pipeline.dedup.phase import Summary, check_plan, marker_path, resumable
from gristmill.pipeline.dedup.segments import (
    combine_ngrams,
    ngram_windows,
    owners,
    unique_per_document,
)
from gristmill.pipeline.dedup.shard_io import ShardOutput, no_documents, read_shard
from gristmill.pipeline.dedup.shuffle import (
    PartitionedWriter,
    read_arrow,
    read_partition,
)
from gristmill.pipeline.dedup.string_hash import hash_strings
from gristmill.pipeline.executors import Executor
from gristmill.pipeline.stage import GlobalStage
from gristmill.pipeline.stats import merge_stage_stats, write_json_atomic
from gristmill.pipeline.writers import open_writer

COUNT_SCHEMA = pa.schema([("span", pa.uint64()), ("documents", pa.int64())])
FREQUENT_SCHEMA = pa.schema([("span", pa.uint64())])
_SENTENCE_END = r"([.!?\x{3002}\x{FF01}\x{FF1F}]+)\s+|\n+"


@dataclass(kw_only=True)
class LineDedupConfig(ShuffleOptions):
    unit: Literal["line", "sentence"] = "line"
    span: int = 1
    """Consecutive units counted together (C4 uses spans of 3 sentences)."""
    min_count: int = 5
    """A span found in at least this many documents is deleted from all of them."""
    min_chars: int = 10
    """Spans shorter than this (after normalization) are never deleted: blank lines, "Thanks!"."""
    normalize: TextNormalization = field(default_factory=TextNormalization)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.span < 1:
            raise ValueError(f"span must be >= 1, got {self.span}")
        if self.min_count < 2:
            raise ValueError(f"min_count must be >= 2 (a span in one document is no duplicate), got {self.min_count}")


@dataclass
class Spans:
    """The units of a batch (flat, with per-document offsets) and the countable spans over them."""

    units: pa.Array
    unit_offsets: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    hashes: np.ndarray
    offsets: np.ndarray
    countable: np.ndarray

    @classmethod
    def of(cls, text: pa.Array, config: LineDedupConfig) -> "Spans":
        if config.unit == "sentence":
            text = pc.replace_substring_regex(text, _SENTENCE_END, "\\1\x00")
        lists = pc.split_pattern(text, "\n" if config.unit == "line" else "\x00")
        units = lists.flatten()
        unit_offsets = np.concatenate([[0], np.cumsum(pc.list_value_length(lists).to_numpy(zero_copy_only=False))])
        normalized = normalize_text(units, config.normalize)
        chars = np.concatenate([[0], np.cumsum(pc.utf8_length(normalized).to_numpy(zero_copy_only=False))])
        starts, ends, offsets = ngram_windows(unit_offsets, config.span)
        hashes, _ = combine_ngrams(hash_strings(normalized), unit_offsets, config.span)
        countable = chars[np.minimum(starts + config.span, ends)] - chars[starts] >= config.min_chars
        return cls(units, unit_offsets, starts, ends, hashes, offsets, countable)

    def covered(self, frequent: np.ndarray, span: int) -> np.ndarray:
        """A mask over units: True where a countable span found in `frequent` (sorted) covers the unit."""
        position = np.minimum(np.searchsorted(frequent, self.hashes), max(len(frequent) - 1, 0))
        hit = self.countable & (frequent[position] == self.hashes) if len(frequent) else np.zeros(len(self.hashes), bool)
        drop = np.zeros(len(self.units), dtype=bool)
        for step in range(span):
            index = self.starts + step
            inside = hit & (index < self.ends)
            drop[index[inside]] = True
        return drop


class LineDedup(GlobalStage):
    name = "line_dedup"
    Config = LineDedupConfig
    reason = "duplicate_lines"

    def run(self, inputs: list[Path], stage_dir: Path, executor: Executor, keep_removed: bool) -> list[Path]:
        config: LineDedupConfig = self.config
        if not inputs:
            return no_documents(stage_dir)
        check_plan(stage_dir, inputs, config)
        counts_dir, frequent_dir = stage_dir / "work" / "counts", stage_dir / "work" / "frequent"
        executor.map(
            count_spans,
            [CountTask(config, shard, str(path), str(counts_dir)) for shard, path in enumerate(inputs)],
            description=f"{stage_dir.name}: count",
        )
        frequent = executor.map(
            select_frequent,
            [SelectTask(config, p, str(counts_dir), str(frequent_dir), len(inputs)) for p in range(config.partitions)],
            description=f"{stage_dir.name}: frequent",
        )
        tasks = [
            DropTask(config, shard, str(path), str(stage_dir), str(frequent_dir), keep_removed)
            for shard, path in enumerate(inputs)
        ]
        dropped = executor.map(drop_frequent_spans, tasks, description=f"{stage_dir.name}: filter")
        merge_stage_stats(stage_dir)
        write_json_atomic(
            stage_dir / "line_stats.json",
            {
                "frequent_spans": sum(result["frequent"] for result in frequent),
                "units_removed": sum(result["units_removed"] for result in dropped),
                "documents_shortened": sum(result["shortened"] for result in dropped),
            },
        )
        return [stage_dir / name for result in dropped for name in result["kept"]]


@dataclass(frozen=True)
class CountTask:
    config: LineDedupConfig
    shard: int
    input_path: str
    counts_dir: str

    @property
    def marker(self) -> Path:
        return marker_path(self.counts_dir, self.shard)


@resumable
def count_spans(task: CountTask) -> Summary:
    """Map phase: (span hash, number of this batch's documents containing it), partitioned by hash."""
    partitions = task.config.partitions
    writer = PartitionedWriter(Path(task.counts_dir), task.shard, partitions, COUNT_SCHEMA)
    try:
        for _, batch in read_shard(task.input_path, task.config.batch_size):
            spans = Spans.of(batch.column("text"), task.config)
            owner = owners(spans.offsets)[spans.countable]
            offsets = np.concatenate([[0], np.cumsum(np.bincount(owner, minlength=batch.num_rows))])
            distinct, _ = unique_per_document(spans.hashes[spans.countable], offsets)
            hashes, documents = np.unique(distinct, return_counts=True)
            rows = pa.RecordBatch.from_arrays([pa.array(hashes), pa.array(documents.astype(np.int64))], schema=COUNT_SCHEMA)
            writer.write(rows, (hashes % np.uint64(partitions)).astype(np.int64))
    except BaseException:
        writer.abort()
        raise
    return {"files": writer.close()}


@dataclass(frozen=True)
class SelectTask:
    config: LineDedupConfig
    partition: int
    counts_dir: str
    frequent_dir: str
    shards: int

    @property
    def marker(self) -> Path:
        return marker_path(self.frequent_dir, self.partition)


def frequent_file(frequent_dir: Path, partition: int) -> Path:
    return frequent_dir / f"part-{partition:05d}.arrow"


@resumable
def select_frequent(task: SelectTask) -> Summary:
    """Reduce phase: the spans of this partition found in at least `min_count` documents."""
    table = read_partition(Path(task.counts_dir), task.shards, task.partition)
    hashes, inverse = np.unique(table.column("span").to_numpy(), return_inverse=True)
    documents = np.bincount(inverse, weights=table.column("documents").to_numpy(), minlength=len(hashes))
    frequent = hashes[documents >= task.config.min_count]
    path = frequent_file(Path(task.frequent_dir), task.partition)
    writer = open_writer("arrow", path.with_suffix(""), FREQUENT_SCHEMA)
    writer.write(pa.RecordBatch.from_arrays([pa.array(frequent)], schema=FREQUENT_SCHEMA))
    return {"files": [writer.close().name], "frequent": len(frequent)}


@dataclass(frozen=True)
class DropTask:
    config: LineDedupConfig
    shard: int
    input_path: str
    stage_dir: str
    frequent_dir: str
    keep_removed: bool

    @property
    def marker(self) -> Path:
        return marker_path(self.stage_dir, self.shard)


def load_frequent(frequent_dir: Path, partitions: int) -> np.ndarray:
    """Every frequent span hash, sorted (memory: one uint64 per distinct boilerplate span)."""
    tables = [read_arrow(frequent_file(frequent_dir, p)) for p in range(partitions)]
    return np.sort(np.concatenate([table.column("span").to_numpy() for table in tables]))


@resumable
def drop_frequent_spans(task: DropTask) -> Summary:
    """Filter phase: delete covered units, rejoin the rest, remove documents left empty."""
    started = time.perf_counter()
    config = task.config
    frequent = load_frequent(Path(task.frequent_dir), config.partitions)
    output = ShardOutput(Path(task.stage_dir), task.shard, task.keep_removed)
    separator = pa.scalar("\n" if config.unit == "line" else " ", pa.large_string())
    units_removed = shortened = 0
    try:
        for _, batch in read_shard(task.input_path, config.batch_size, output.stats):
            output.stats.count_in(batch)
            spans = Spans.of(batch.column("text"), config)
            drop = spans.covered(frequent, config.span)
            kept_units = np.bincount(owners(spans.unit_offsets)[~drop], minlength=batch.num_rows)
            dropped_units = np.diff(spans.unit_offsets) - kept_units
            offsets = pa.array(np.concatenate([[0], np.cumsum(kept_units)]).astype(np.int64))
            kept_lists = pa.LargeListArray.from_arrays(offsets, spans.units.filter(pa.array(~drop)))
            text = pc.binary_join(kept_lists, separator)
            empty = (dropped_units > 0) & (pc.utf8_length(pc.utf8_trim_whitespace(text)).to_numpy(zero_copy_only=False) == 0)
            changed = dropped_units > 0
            column = batch.schema.get_field_index("text")
            rewritten = pa.RecordBatch.from_arrays(
                [text if index == column else array for index, array in enumerate(batch.columns)], schema=batch.schema
            )
            output.context.remove(batch.filter(pa.array(empty)), LineDedup.reason,
                                  pa.array(dropped_units[empty].astype(np.float64)))
            output.keep(rewritten.filter(pa.array(~empty)))
            units_removed += int(dropped_units.sum())
            shortened += int((changed & ~empty).sum())
    except BaseException:
        output.abort()
        raise
    kept = output.close(time.perf_counter() - started)
    return {"files": kept, "kept": kept, "units_removed": units_removed, "shortened": shortened}
