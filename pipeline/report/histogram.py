"""Fixed-bin histograms that are filled batch by batch, so a distribution never needs all values at once."""

from dataclasses import dataclass, field

import numpy as np


def _short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}"


@dataclass
class Histogram:
    """Counts of values in bins [edges[i], edges[i+1]); values below the first edge go to the first bin and
    values at or above the last finite edge to the last bin, so nothing is dropped."""

    edges: np.ndarray
    counts: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.edges = np.asarray(self.edges, dtype=np.float64)
        if self.edges.ndim != 1 or len(self.edges) < 2 or np.any(np.diff(self.edges) <= 0):
            raise ValueError(f"histogram edges must be at least two increasing values, got {self.edges.tolist()}")
        self.counts = np.zeros(len(self.edges) - 1, dtype=np.int64)

    @classmethod
    def decades(cls, low: float, high: float) -> "Histogram":
        """Bins 0, low, 2·low, 5·low, 10·low, ... up to `high` and beyond: for lengths and counts over many orders."""
        steps = [low * 10**power * m for power in range(int(np.log10(high / low)) + 1) for m in (1, 2, 5)]
        return cls(np.array([0.0, *(s for s in steps if s <= high), np.inf]))

    @classmethod
    def linear(cls, low: float, high: float, bins: int = 20) -> "Histogram":
        """`bins` equal bins from `low` to `high` (one bin around `low` when they are equal)."""
        if high <= low:
            high = low + 1.0
        return cls(np.linspace(low, high, bins + 1))

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        values = values[~np.isnan(values)]
        index = np.clip(np.searchsorted(self.edges, values, side="right") - 1, 0, len(self.counts) - 1)
        self.counts += np.bincount(index, minlength=len(self.counts))

    def merged(self, other: "Histogram") -> "Histogram":
        if not np.array_equal(self.edges, other.edges):
            raise ValueError("only histograms with the same bins can be added")
        total = Histogram(self.edges)
        total.counts = self.counts + other.counts
        return total

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def labels(self) -> list[str]:
        """One readable label per bin: `100–200`, and `≥1M` for an open last bin."""
        labels = []
        for low, high in zip(self.edges[:-1], self.edges[1:]):
            labels.append(f"≥{_short(low)}" if np.isinf(high) else f"{_short(low)}–{_short(high)}")
        return labels
