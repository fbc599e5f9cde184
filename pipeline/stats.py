"""Per-stage accounting: documents and bytes in/out, removals by reason, errors by kind, time.

Each shard writes its own `OUT/<stage>/stats/part-XXXXX.json`; `merge_stage_stats` sums them into
`OUT/<stage>/stats.json`, so stats survive partial runs and add up the same on every executor.
"""

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow as pa

from gristmill.pipeline.schema import text_bytes


@dataclass
class StageStats:
    """Counters for one stage over one shard (or, merged, over a whole run)."""

    stage: str
    docs_in: int = 0
    docs_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    removed: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    wall_s: float = 0.0
    shards: int = 0

    def count_in(self, batch: pa.RecordBatch) -> None:
        self.docs_in += batch.num_rows
        self.bytes_in += text_bytes(batch)

    def count_out(self, batch: pa.RecordBatch) -> None:
        self.docs_out += batch.num_rows
        self.bytes_out += text_bytes(batch)

    @property
    def docs_removed(self) -> int:
        return sum(self.removed.values())

    @property
    def docs_errors(self) -> int:
        return sum(self.errors.values())

    def check_balance(self) -> None:
        """The accounting invariant: every document that came in went out, was removed, or was an error."""
        accounted = self.docs_out + self.docs_removed + self.docs_errors
        if accounted != self.docs_in:
            raise AssertionError(
                f"stage {self.stage}: {self.docs_in} documents in but {self.docs_out} out + "
                f"{self.docs_removed} removed + {self.docs_errors} errors = {accounted}"
            )

    def add(self, other: "StageStats") -> None:
        self.docs_in += other.docs_in
        self.docs_out += other.docs_out
        self.bytes_in += other.bytes_in
        self.bytes_out += other.bytes_out
        self.removed.update(other.removed)
        self.errors.update(other.errors)
        self.wall_s += other.wall_s
        self.shards += other.shards

    def to_dict(self) -> dict:
        data = asdict(self)
        data["removed"] = dict(sorted(self.removed.items()))
        data["errors"] = dict(sorted(self.errors.items()))
        data["docs_removed"] = self.docs_removed
        data["docs_errors"] = self.docs_errors
        data["docs_per_s"] = round(self.docs_in / self.wall_s, 1) if self.wall_s > 0 else None
        data["mb_per_s"] = round(self.bytes_in / 2**20 / self.wall_s, 3) if self.wall_s > 0 else None
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "StageStats":
        return cls(
            stage=data["stage"],
            docs_in=data["docs_in"],
            docs_out=data["docs_out"],
            bytes_in=data["bytes_in"],
            bytes_out=data["bytes_out"],
            removed=Counter(data.get("removed", {})),
            errors=Counter(data.get("errors", {})),
            wall_s=data.get("wall_s", 0.0),
            shards=data.get("shards", 0),
        )


def write_json_atomic(path: Path, data: dict) -> None:
    """Writes JSON under a temporary name and renames it, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def shard_stats_path(stage_dir: Path, shard: int) -> Path:
    return stage_dir / "stats" / f"part-{shard:05d}.json"


def merge_stage_stats(stage_dir: Path, write: bool = True) -> StageStats | None:
    """Sums the per-shard stats of one stage folder (into its stats.json if `write`); None if it has none."""
    parts = sorted((stage_dir / "stats").glob("part-*.json"))
    if not parts:
        return None
    total = StageStats(stage=stage_dir.name)
    for part in parts:
        total.add(StageStats.from_dict(json.loads(part.read_text(encoding="utf-8"))))
    if write:
        write_json_atomic(stage_dir / "stats.json", total.to_dict())
    return total


def read_stage_stats(stage_dir: Path) -> StageStats | None:
    """A stage's stats as they stand, without writing: per-shard files summed (a run in progress or cut
    short), else its stats.json (global stages write only that), else None."""
    merged = merge_stage_stats(stage_dir, write=False)
    if merged is None and (stage_dir / "stats.json").is_file():
        merged = StageStats.from_dict(json.loads((stage_dir / "stats.json").read_text(encoding="utf-8")))
    return merged
