"""Shared helpers for the dedup tests: write document shards, run a stage locally, read what it kept."""

import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.pipeline.executors import Executor, ExecutorConfig, make_executor
from gristmill.pipeline.schema import DOCUMENT_SCHEMA
from gristmill.pipeline.stage import GlobalStage

SAMPLE = Path(__file__).resolve().parents[3] / "data" / "sample"

VOCABULARY = [a + b + c for a in "bcdfghklmnprst" for b in "aeiouy" for c in "bdgklmnprstvxz"][:1000] + [
    a + b for a in "bcdfghklmnprstvwxz" for b in "aeiou"
]


def random_text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(words))


def edit_words(rng: random.Random, text: str, edits: int) -> str:
    """`text` with `edits` words replaced by fresh ones at random places."""
    words = text.split()
    for index in rng.sample(range(len(words)), edits):
        words[index] = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(12))
    return " ".join(words)


def write_shards(root: Path, shards: list[list[dict]]) -> list[Path]:
    """One parquet file per inner list of documents ({"id", "text", optional "metadata"})."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, documents in enumerate(shards):
        rows = [
            {"id": d["id"], "text": d["text"], "source": "test", "metadata": d.get("metadata", "{}")}
            for d in documents
        ]
        table = pa.Table.from_pylist(rows, schema=DOCUMENT_SCHEMA)
        for column in {key for d in documents for key in d} - {"id", "text", "source", "metadata"}:
            table = table.append_column(column, pa.array([d[column] for d in documents], pa.float64()))
        path = root / f"shard-{index:02d}.parquet"
        pq.write_table(table, path)
        paths.append(path)
    return paths


def run_stage(stage: GlobalStage, inputs: list[Path], stage_dir: Path, executor: Executor | None = None) -> list[Path]:
    if executor is not None:
        return stage.run(inputs, stage_dir, executor, keep_removed=True)
    with make_executor(ExecutorConfig()) as local:
        return stage.run(inputs, stage_dir, local, keep_removed=True)


def kept_ids(outputs: list[Path]) -> list[str]:
    return sorted(i for path in outputs for i in pq.read_table(path).column("id").to_pylist())


def removed_rows(stage_dir: Path) -> list[dict]:
    folder = stage_dir / "removed"
    if not folder.is_dir():
        return []
    return [row for path in sorted(folder.glob("part-*.parquet")) for row in pq.read_table(path).to_pylist()]


def clusters_by_id(stage_dir: Path) -> dict[str, int]:
    rows = [row for path in sorted((stage_dir / "clusters").glob("part-*.parquet")) for row in pq.read_table(path).to_pylist()]
    return {row["id"]: row["cluster"] for row in rows}
