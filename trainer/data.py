"""Document streams over token datasets: seeded order per epoch, disjoint shards, weighted mixing, resumable.

The documents of one dataset split are shuffled once per epoch by a generator seeded with (seed, source,
epoch); data shard s of S takes every S-th document of that order, so the shards of an epoch are disjoint
and together hold every document. Training reads one shard (S = 1) that every rank packs alike and deals
out by rows (trainer/loader.py); validation gives each rank its own shard (S = ranks). With several
datasets, each draw picks a source by a counter-based hash of (seed, shard, draw number), so the choice
needs no RNG state: the stream's whole state is the draw count and each source's (epoch, position).
"""

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class Documents(Protocol):
    """What a stream needs from a token dataset (gristmill.tokenizer.shard_format.TokenDataset has it)."""

    def document(self, index: int) -> np.ndarray: ...


_MASK64 = (1 << 64) - 1


def _mix64(value: int) -> int:
    """SplitMix64 finalizer: a cheap, well-spread hash of a 64-bit integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def uniform_draw(seed: int, shard: int, draw: int) -> float:
    """A number in [0, 1) that depends only on its three arguments."""
    return _mix64(_mix64(_mix64(seed) ^ shard) ^ draw) / 2.0**64


class DocumentStream:
    """Documents of shard `shard` of `num_shards`, from one or more (dataset, indices) sources.

    `loop=True` (training) goes on epoch after epoch and mixes sources by `weights`; `loop=False`
    (validation) reads each source once, in order, then raises StopIteration. `shuffle=False` keeps the
    indices' own order.
    """

    def __init__(
        self,
        datasets: Sequence[Documents],
        indices: Sequence[np.ndarray],
        *,
        shard: int,
        num_shards: int,
        seed: int,
        weights: Sequence[float] | None = None,
        shuffle: bool = True,
        loop: bool = True,
    ) -> None:
        if len(datasets) != len(indices) or not datasets:
            raise ValueError(f"need one index array per dataset, got {len(datasets)} datasets, {len(indices)} arrays")
        if not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} is outside 0..{num_shards - 1}")
        weights = [1.0] * len(datasets) if weights is None else list(weights)
        if len(weights) != len(datasets) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"weights {weights} must be one non-negative number per dataset, not all zero")
        if loop:
            for source, (index, weight) in enumerate(zip(indices, weights)):
                if weight and len(index) < num_shards:
                    raise ValueError(
                        f"dataset {source} has {len(index)} documents in this split, fewer than the {num_shards} "
                        "data shards; use more data"
                    )
        self.datasets, self.indices = list(datasets), [np.asarray(i, dtype=np.int64) for i in indices]
        self.shard, self.num_shards, self.seed = shard, num_shards, seed
        self.shuffle, self.loop = shuffle, loop
        self._cumulative = np.cumsum(weights) / sum(weights)
        self._draws = 0
        self._positions = [(0, 0)] * len(datasets)  # (epoch, position in this shard's slice of the epoch)
        self._orders: dict[int, tuple[int, np.ndarray]] = {}
        self._sequential_source = 0

    def _order(self, source: int, epoch: int) -> np.ndarray:
        """This shard's documents of `source` for `epoch`, cached for the current epoch."""
        cached = self._orders.get(source)
        if cached is None or cached[0] != epoch:
            index = self.indices[source]
            if self.shuffle:
                index = np.random.default_rng([self.seed, source, epoch]).permutation(index)
            cached = (epoch, index[self.shard :: self.num_shards])
            self._orders[source] = cached
        return cached[1]

    def _pick_source(self) -> int:
        if not self.loop:
            return self._sequential_source
        if len(self.datasets) == 1:
            return 0
        u = uniform_draw(self.seed, self.shard, self._draws)
        return min(int(np.searchsorted(self._cumulative, u, side="right")), len(self.datasets) - 1)

    def next_document(self) -> np.ndarray:
        while True:
            source = self._pick_source()
            epoch, position = self._positions[source]
            order = self._order(source, epoch)
            if position < len(order):
                self._positions[source] = (epoch, position + 1)
                self._draws += 1
                return self.datasets[source].document(int(order[position]))
            if self.loop:
                self._positions[source] = (epoch + 1, 0)
            elif self._sequential_source + 1 < len(self.datasets):
                self._sequential_source += 1
            else:
                raise StopIteration

    def state_dict(self) -> dict[str, Any]:
        return {
            "draws": self._draws,
            "positions": [list(p) for p in self._positions],
            "sequential_source": self._sequential_source,
            "shard": self.shard,
            "num_shards": self.num_shards,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["shard"], state["num_shards"]) != (self.shard, self.num_shards):
            raise ValueError(
                f"stream state is for data shard {state['shard']} of {state['num_shards']}, this is "
                f"{self.shard} of {self.num_shards}: a state only continues the shard it was taken from"
            )
        self._draws = state["draws"]
        self._positions = [tuple(p) for p in state["positions"]]
        self._sequential_source = state["sequential_source"]
