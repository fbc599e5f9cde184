import numpy as np
import pytest

from gristmill.pipeline.report.histogram import Histogram


def reference_counts(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value by plain comparison; out-of-range values go to the end bins."""
    counts = np.zeros(len(edges) - 1, dtype=np.int64)
    for value in values:
        index = int(np.sum(edges[1:-1] <= value))
        counts[index] += 1
    return counts


def test_batches_add_up_to_the_reference() -> None:
    rng = np.random.default_rng()
    values = np.exp(rng.uniform(0, np.log(5e6), size=2000)).round()
    histogram = Histogram.decades(10, 1e6)
    for batch in np.array_split(values, 7):
        histogram.add(batch)
    assert histogram.counts.tolist() == reference_counts(values, histogram.edges).tolist()
    assert histogram.total == len(values)


def test_linear_bins_keep_the_maximum_and_skip_nan() -> None:
    rng = np.random.default_rng()
    values = rng.uniform(-2, 3, size=500)
    histogram = Histogram.linear(values.min(), values.max(), 10)
    histogram.add(np.append(values, np.nan))
    assert histogram.total == len(values)
    assert histogram.counts[-1] >= 1
    assert histogram.counts.tolist() == reference_counts(values, histogram.edges).tolist()


def test_labels_and_merge() -> None:
    histogram = Histogram.decades(10, 1000)
    assert histogram.labels() == ["0–10", "10–20", "20–50", "50–100", "100–200", "200–500", "500–1k", "≥1k"]
    histogram.add(np.array([5, 15, 2000]))
    merged = histogram.merged(histogram)
    assert merged.counts.tolist() == [2, 2, 0, 0, 0, 0, 0, 2]
    with pytest.raises(ValueError, match="same bins"):
        histogram.merged(Histogram.decades(1, 1000))


def test_bad_edges_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"increasing"):
        Histogram(np.array([0.0, 2.0, 1.0]))
