"""Connected components of an edge list, vectorized: union-find by hooking roots and pointer jumping.

Each round hooks the root of every edge's larger end under the smaller root (`np.minimum.at`), then
compresses paths until every node points at its root. Parents only ever decrease, so the loop ends;
chains of any length converge in a logarithmic number of compressions per round.
"""

import numpy as np


def connected_components(left: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nodes, roots): every distinct node, sorted, and the smallest node of its component."""
    nodes, index = np.unique(np.concatenate([left, right]), return_inverse=True)
    a, b = index[: len(left)], index[len(left) :]
    parent = np.arange(len(nodes))
    while True:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            break
        low = np.minimum(root_a[differ], root_b[differ])
        np.minimum.at(parent, root_a[differ], low)
        np.minimum.at(parent, root_b[differ], low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    return nodes, nodes[parent]
