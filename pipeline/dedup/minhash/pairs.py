"""Reduce phase: documents sharing a band key are candidate duplicates; emit them as edges.

Inside each group of equal (band, key), every member is linked to the group's earliest member (a
star, which yields the same components as all pairs with far fewer edges). Edges found in several
bands are emitted once. With `verify`, an edge survives only if the true Jaccard similarity of its
two documents' shingle sets reaches `jaccard_threshold`; members that fail against the anchor form a
residual group with its own earliest member as anchor, for up to `VERIFY_ROUNDS` rounds, so a
group holding two near-duplicate families is split rather than lost.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.shingle_sets import ShingleSets
from gristmill.pipeline.dedup.phase import Summary, marker_path, resumable
from gristmill.pipeline.dedup.segments import group_starts
from gristmill.pipeline.dedup.shuffle import read_partition
from gristmill.pipeline.writers import open_writer

EDGE_SCHEMA = pa.schema(
    [("left", pa.uint64()), ("right", pa.uint64()), ("left_priority", pa.float64()), ("right_priority", pa.float64())]
)
VERIFY_ROUNDS = 4
Similarity = Callable[[np.ndarray, np.ndarray], np.ndarray]


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


def _stars(group: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(anchor, member) row pairs linking each group's first row to its other rows (`rows` in group order)."""
    first = group_starts(group[rows])
    anchors = rows[first][np.cumsum(first) - 1]
    return anchors[~first], rows[~first]


def _distinct(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct (left, right) pairs, sorted, and for every input pair the index of its distinct pair."""
    pairs = np.stack([left, right], axis=1)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], inverse.ravel()


def candidate_edges(
    group: np.ndarray, doc: np.ndarray, similarity: Similarity | None, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """(left rows, right rows) of the edges to keep; rows are sorted by (group, doc)."""
    rows = np.arange(len(doc))
    anchors, members = _stars(group, rows)
    if similarity is None:
        return anchors, members
    kept_anchors, kept_members = [], []
    for _ in range(VERIFY_ROUNDS):
        if len(members) == 0:
            break
        left, right, inverse = _distinct(doc[anchors], doc[members])
        passed = (similarity(left, right) >= threshold)[inverse]
        kept_anchors.append(anchors[passed])
        kept_members.append(members[passed])
        anchors, members = _stars(group, members[~passed])
    return np.concatenate(kept_anchors or [rows[:0]]), np.concatenate(kept_members or [rows[:0]])


def find_edges(table: pa.Table, similarity: Similarity | None, threshold: float) -> pa.RecordBatch:
    """Distinct duplicate edges (earlier document on the left) from one partition of band keys."""
    band, key, doc, priority = (table.column(name).to_numpy() for name in ("band", "key", "doc", "priority"))
    order = np.lexsort((doc, key, band))
    band, key, doc, priority = band[order], key[order], doc[order], priority[order]
    left, right = candidate_edges(np.cumsum(group_starts(band, key)), doc, similarity, threshold)
    _, _, inverse = _distinct(doc[left], doc[right])
    first = np.unique(inverse, return_index=True)[1]
    left, right = left[first], right[first]
    columns = [doc[left], doc[right], priority[left], priority[right]]
    return pa.RecordBatch.from_arrays([pa.array(column) for column in columns], schema=EDGE_SCHEMA)


@resumable
def find_pairs(task: PairTask) -> Summary:
    config = task.config
    table = read_partition(Path(task.buckets_dir), task.shards, task.partition)
    similarity = ShingleSets(Path(task.buckets_dir)).jaccard if config.verify else None
    edges = find_edges(table, similarity, config.jaccard_threshold)
    path = edge_file(Path(task.edges_dir), task.partition)
    writer = open_writer("arrow", path.with_suffix(""), EDGE_SCHEMA)
    writer.write(edges)
    return {"files": [writer.close().name], "pairs": edges.num_rows}
