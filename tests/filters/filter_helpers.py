"""Small helpers the filter tests share: build a batch, run a stage, read back its decisions."""

import json
from pathlib import Path

import pyarrow as pa
from gristmill.pipeline.schema import DOCUMENT_SCHEMA
from gristmill.pipeline.stage import ShardContext, Stage
from gristmill.pipeline.stats import StageStats

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "sample"


def documents(*texts: str, metadata: list[dict] | None = None) -> pa.RecordBatch:
    rows = [
        {"id": f"d{i}", "text": text, "source": "test", "metadata": json.dumps((metadata or [{}] * len(texts))[i])}
        for i, text in enumerate(texts)
    ]
    return pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA)


class RemovedRows:
    """Stands in for `removed/`: remembers each removed row's reason and value by id."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, float | None]] = {}
        self.batches: list[pa.RecordBatch] = []

    def write(self, batch: pa.RecordBatch) -> None:
        self.batches.append(batch)
        ids, reasons, values = (batch.column(name).to_pylist() for name in ("id", "reason", "value"))
        self.rows.update({i: (r, v) for i, r, v in zip(ids, reasons, values)})


def run(stage: Stage, batch: pa.RecordBatch) -> tuple[pa.RecordBatch, dict[str, tuple[str, float | None]], StageStats]:
    """Runs `stage` on one batch; returns what it kept, what it removed (id -> reason, value) and its stats."""
    removed = RemovedRows()
    stats = StageStats(stage.name)
    stats.count_in(batch)
    kept = stage.process(batch, ShardContext(0, Path("."), stats, removed))
    stats.count_out(kept)
    stats.check_balance()
    return kept, removed.rows, stats


def reasons(stage: Stage, *texts: str) -> list[str | None]:
    """Per text: the reason it was removed for, or None if kept."""
    _, removed, _ = run(stage, documents(*texts))
    return [removed.get(f"d{i}", (None, None))[0] for i in range(len(texts))]
