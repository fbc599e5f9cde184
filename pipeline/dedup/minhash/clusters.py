"""Cluster phase: connected components of all duplicate edges, then the kept document of each cluster.

Without verification every component is one cluster kept at its best document (highest priority,
then earliest). With `verify`, components are split so that every removed document's true Jaccard
similarity to its cluster's kept document reaches the threshold: each round, the best unassigned
document of a component keeps the unassigned members similar enough to it, and the rest go to the
next round. A chain A~B~C with A and C far apart thus keeps A and C, not just A.

This is the one single-task phase. It holds only documents that have at least one duplicate edge
(never the corpus's signatures), so its memory grows with the number of near-duplicates.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.doc_keys import shard_of
from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.pairs import Similarity, edge_file
from gristmill.pipeline.dedup.minhash.shingle_sets import ShingleSets
from gristmill.pipeline.dedup.phase import Summary, marker_path, resumable
from gristmill.pipeline.dedup.removal import REMOVAL_SCHEMA
from gristmill.pipeline.dedup.segments import group_starts
from gristmill.pipeline.dedup.shuffle import PartitionedWriter, read_arrow
from gristmill.pipeline.dedup.union_find import connected_components


@dataclass(frozen=True)
class ClusterTask:
    config: MinHashConfig
    buckets_dir: str
    edges_dir: str
    removals_dir: str
    shards: int

    @property
    def marker(self) -> Path:
        return marker_path(self.removals_dir, 0)


def read_edges(edges_dir: Path, partitions: int) -> pa.Table:
    return pa.concat_tables([read_arrow(edge_file(edges_dir, p)) for p in range(partitions)])


def keepers(
    nodes: np.ndarray, roots: np.ndarray, priority: np.ndarray, similarity: Similarity | None, threshold: float
) -> np.ndarray:
    """For every node, the node it is kept as (itself for kept documents)."""
    order = np.lexsort((nodes, -priority, roots))
    ranked_nodes, ranked_roots = nodes[order], roots[order]
    keeper = np.arange(len(order))
    pending = keeper.copy()
    while len(pending):
        first = group_starts(ranked_roots[pending])
        anchors = pending[first][np.cumsum(first) - 1][~first]
        members = pending[~first]
        close = (
            np.ones(len(members), dtype=bool)
            if similarity is None
            else similarity(ranked_nodes[members], ranked_nodes[anchors]) >= threshold
        )
        keeper[members[close]] = anchors[close]
        pending = members[~close]
    kept = np.empty_like(nodes)
    kept[order] = ranked_nodes[keeper]
    return kept


@resumable
def cluster_pairs(task: ClusterTask) -> Summary:
    config = task.config
    edges = read_edges(Path(task.edges_dir), config.partitions)
    left, right = edges.column("left").to_numpy(), edges.column("right").to_numpy()
    nodes, roots = connected_components(left, right)
    priority = np.empty(len(nodes))
    priority[np.searchsorted(nodes, left)] = edges.column("left_priority").to_numpy()
    priority[np.searchsorted(nodes, right)] = edges.column("right_priority").to_numpy()
    similarity = ShingleSets(Path(task.buckets_dir)).jaccard if config.verify else None
    kept = keepers(nodes, roots, priority, similarity, config.jaccard_threshold)
    _, members, sizes = np.unique(kept, return_inverse=True, return_counts=True)
    grouped = sizes[members] > 1
    nodes, kept = nodes[grouped], kept[grouped]
    writer = PartitionedWriter(Path(task.removals_dir), 0, task.shards, REMOVAL_SCHEMA)
    writer.write(
        pa.RecordBatch.from_arrays([pa.array(nodes), pa.array(kept), pa.array(nodes != kept)], schema=REMOVAL_SCHEMA),
        shard_of(nodes),
    )
    sizes = sizes[sizes > 1]
    return {
        "files": writer.close(),
        "pairs": len(left),
        "components": len(np.unique(roots)),
        "clusters": len(sizes),
        "documents_in_clusters": len(nodes),
        "removed": int((nodes != kept).sum()),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "cluster_sizes": {str(size): count for size, count in sorted(Counter(sizes.tolist()).items())},
    }
