"""Reduce phase: documents sharing a band key are candidate duplicates; emit them as edges.

Inside each group of equal (band, key), every member is linked to the group's earliest member (a
star, which yields the same components as all pairs with far fewer edges). Edges found in several
bands are emitted once. With `verify`, an edge survives only if the true Jaccard similarity of its
two documents' shingle sets reaches `jaccard_threshold`.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.shingle_sets import ShingleSets
from gristmill.pipeline.dedup.phase import Summary, marker_path, resumable
from gristmill.pipeline.dedup.shuffle import read_partition
from gristmill.pipeline.writers import open_writer

EDGE_SCHEMA = pa.schema(
    [("left", pa.uint64()), ("right", pa.uint64()), ("left_priority", pa.float64()), ("right_priority", pa.float64())]
)


def edge_file(edges_dir: Path, partition: int) -> Path:
    return edges_dir / f"part-{partition:05d}.arrow"


@dataclass(frozen=True)
class PairTask:
    config: MinHashConfig
    partition: int
    buckets_dir: str
    edges_dir: str
    shards: int

    @property
    def marker(self) -> Path:
        return marker_path(self.edges_dir, self.partition)


def star_edges(band: np.ndarray, key: np.ndarray, doc: np.ndarray, priority: np.ndarray) -> pa.RecordBatch:
    """Distinct (earliest member, other member) edges of every group of equal (band, key)."""
    order = np.lexsort((doc, key, band))
    band, key, doc, priority = band[order], key[order], doc[order], priority[order]
    first = np.ones(len(doc), dtype=bool)
    first[1:] = (band[1:] != band[:-1]) | (key[1:] != key[:-1])
    group = np.cumsum(first) - 1
    other = ~first
    left, right = doc[first][group][other], doc[other]
    left_priority, right_priority = priority[first][group][other], priority[other]
    order = np.lexsort((right, left))
    left, right = left[order], right[order]
    distinct = np.ones(len(left), dtype=bool)
    distinct[1:] = (left[1:] != left[:-1]) | (right[1:] != right[:-1])
    columns = [left, right, left_priority[order], right_priority[order]]
    return pa.RecordBatch.from_arrays([pa.array(column[distinct]) for column in columns], schema=EDGE_SCHEMA)


@resumable
def find_pairs(task: PairTask) -> Summary:
    table = read_partition(Path(task.buckets_dir), task.shards, task.partition)
    edges = star_edges(*(table.column(name).to_numpy() for name in ("band", "key", "doc", "priority")))
    candidates = edges.num_rows
    if task.config.verify and candidates:
        similarity = ShingleSets(Path(task.buckets_dir)).jaccard(
            edges.column("left").to_numpy(), edges.column("right").to_numpy()
        )
        edges = edges.filter(pa.array(similarity >= task.config.jaccard_threshold))
    path = edge_file(Path(task.edges_dir), task.partition)
    writer = open_writer("arrow", path.with_suffix(""), EDGE_SCHEMA)
    writer.write(edges)
    return {"files": [writer.close().name], "candidates": candidates, "pairs": edges.num_rows}
