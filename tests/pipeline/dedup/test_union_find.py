"""connected_components against a plain Python union-find on random graphs, chains and stars."""

import numpy as np
import pytest

from gristmill.pipeline.dedup.union_find import connected_components


def reference_components(left: list[int], right: list[int]) -> dict[int, int]:
    parent: dict[int, int] = {}

    def find(x: int) -> int:
        parent.setdefault(x, x)
        while parent[x] != x:
            x = parent[x]
        return x

    for a, b in zip(left, right):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {node: find(node) for node in parent}


@pytest.mark.parametrize("nodes,edges", [(10, 5), (1000, 800), (5000, 6000)], ids=lambda v: str(v))
def test_random_graphs_match_reference(nodes: int, edges: int) -> None:
    rng = np.random.default_rng()
    ids = rng.choice(2**40, size=nodes, replace=False).astype(np.uint64)
    left, right = ids[rng.integers(0, nodes, edges)], ids[rng.integers(0, nodes, edges)]
    found_nodes, roots = connected_components(left, right)
    expected = reference_components(left.tolist(), right.tolist())
    assert dict(zip(found_nodes.tolist(), roots.tolist())) == expected


def test_long_chain_in_reverse_order_is_one_component() -> None:
    chain = np.arange(10_000, dtype=np.uint64)[::-1].copy()
    nodes, roots = connected_components(chain[1:], chain[:-1])
    assert len(nodes) == 10_000 and set(roots.tolist()) == {0}


def test_no_edges_gives_no_nodes() -> None:
    empty = np.zeros(0, dtype=np.uint64)
    nodes, roots = connected_components(empty, empty)
    assert len(nodes) == 0 and len(roots) == 0
