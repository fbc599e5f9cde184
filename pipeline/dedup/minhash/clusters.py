"""Cluster phase: connected components of all verified edges, one kept document per component.

This is the one single-task phase. It holds only documents that have at least one duplicate edge
(never the corpus's signatures), so its memory grows with the number of near-duplicates.
"""

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from gristmill.pipeline.dedup.doc_keys import shard_of
from gristmill.pipeline.dedup.minhash.pairs import edge_file
from gristmill.pipeline.dedup.phase import Summary, marker_path, resumable
from gristmill.pipeline.dedup.removal import REMOVAL_SCHEMA
from gristmill.pipeline.dedup.shuffle import PartitionedWriter
from gristmill.pipeline.dedup.union_find import connected_components


@dataclass(frozen=True)
class ClusterTask:
    edges_dir: str
    partitions: int
    removals_dir: str
    shards: int

    @property
    def marker(self) -> Path:
        return marker_path(self.removals_dir, 0)


def read_edges(edges_dir: Path, partitions: int) -> pa.Table:
    tables = [pa.ipc.open_file(pa.memory_map(str(edge_file(edges_dir, p)))).read_all() for p in range(partitions)]
    return pa.concat_tables(tables)


def keepers(nodes: np.ndarray, roots: np.ndarray, priority: np.ndarray) -> np.ndarray:
    """For every node, the kept document of its component: highest priority, then smallest key."""
    order = np.lexsort((nodes, -priority, roots))
    first = np.ones(len(order), dtype=bool)
    first[1:] = roots[order][1:] != roots[order][:-1]
    kept = np.empty_like(nodes)
    kept[order] = nodes[order][first][np.cumsum(first) - 1]
    return kept


@resumable
def cluster_pairs(task: ClusterTask) -> Summary:
    edges = read_edges(Path(task.edges_dir), task.partitions)
    left, right = edges.column("left").to_numpy(), edges.column("right").to_numpy()
    nodes, roots = connected_components(left, right)
    priority = np.empty(len(nodes))
    priority[np.searchsorted(nodes, left)] = edges.column("left_priority").to_numpy()
    priority[np.searchsorted(nodes, right)] = edges.column("right_priority").to_numpy()
    kept = keepers(nodes, roots, priority)
    remove = nodes != kept
    writer = PartitionedWriter(Path(task.removals_dir), 0, task.shards, REMOVAL_SCHEMA)
    writer.write(
        pa.RecordBatch.from_arrays([pa.array(nodes), pa.array(kept), pa.array(remove)], schema=REMOVAL_SCHEMA),
        shard_of(nodes),
    )
    files = writer.close()
    sizes = np.unique(roots, return_counts=True)[1]
    return {
        "files": [str(path.relative_to(Path(task.removals_dir))) for path in files],
        "pairs": int(len(left)),
        "clusters": int(len(sizes)),
        "documents_in_clusters": int(len(nodes)),
        "removed": int(remove.sum()),
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "cluster_sizes": {str(size): count for size, count in sorted(Counter(sizes.tolist()).items())},
    }
