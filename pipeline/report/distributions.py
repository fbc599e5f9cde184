"""Distributions over a run's documents, streamed from its outputs one column and one batch at a time.

Document length is counted where documents went: kept by the last stage that wrote text, and removed
by each stage (from `removed/`). Columns that stages add (a language, a score) are counted the same way,
kept versus removed. Duplicate-cluster sizes come from dedup `clusters/`, token counts from token shards.
"""

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gristmill.pipeline.report.collect import RunStats
from gristmill.pipeline.report.histogram import Histogram
from gristmill.pipeline.report.outputs import (
    cluster_files,
    iter_columns,
    iter_token_counts,
    kept_files,
    read_manifest,
    removed_files,
    token_files,
)
from gristmill.pipeline.schema import DOCUMENT_SCHEMA

PROBABILITY_SLACK = 1e-3
"""fastText probabilities can exceed 1 by a rounding error; such columns still get bins from 0 to 1."""
SIDE_COLUMNS = {"reason", "value"}
"""Columns of `removed/` files that say why a document went, not what it is."""


def length_bins() -> Histogram:
    return Histogram.decades(10, 1e6)


def token_bins() -> Histogram:
    return Histogram.decades(1, 1e6)


@dataclass
class Distributions:
    """Everything the distributions section plots; series are keyed by a label such as `removed by gopher`."""

    length: dict[str, Histogram] = field(default_factory=dict)
    """`input` (when known) and `kept after <stage>`: before and after."""
    removed_length: dict[str, Histogram] = field(default_factory=dict)
    """Lengths of the documents each stage removed, by stage."""
    categories: dict[str, dict[str, Counter]] = field(default_factory=dict)
    """Per added string column (e.g. `lang`): counts of each value, kept and removed by stage."""
    scores: dict[str, dict[str, Histogram]] = field(default_factory=dict)
    """Per added float column (e.g. `lang_score`, `quality`): kept and removed by stage."""
    cluster_members: dict[str, Counter] = field(default_factory=dict)
    """Per dedup stage: cluster key -> number of documents in the cluster."""
    tokens_per_document: dict[str, Histogram] = field(default_factory=dict)
    tokens_per_shard: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def cluster_sizes(self) -> dict[str, Counter]:
        """Per dedup stage: cluster size -> number of clusters of that size."""
        return {stage: Counter(members.values()) for stage, members in self.cluster_members.items()}


def text_lengths(files: list[Path]) -> Histogram:
    histogram = length_bins()
    for batch in iter_columns(files, ["text"]):
        histogram.add(pc.utf8_length(batch.column("text")).to_numpy(zero_copy_only=False))
    return histogram


def value_counts(files: list[Path], column: str) -> Counter:
    counts: Counter = Counter()
    for batch in iter_columns(files, [column]):
        for item in batch.column(column).value_counts().to_pylist():
            counts[item["values"] if item["values"] is not None else "(none)"] += item["counts"]
    return counts


def score_histograms(series: dict[str, list[Path]], column: str, bins: int = 20) -> dict[str, Histogram]:
    """One histogram of a float column per series, over shared bins: 0 to 1 for probabilities, else the range
    of all values (found by a first pass)."""
    low, high = np.inf, -np.inf
    for files in series.values():
        for batch in iter_columns(files, [column]):
            extremes = pc.min_max(batch.column(column))
            if extremes["min"].is_valid:
                low, high = min(low, extremes["min"].as_py()), max(high, extremes["max"].as_py())
    if not np.isfinite(low) or (low >= 0.0 and high <= 1.0 + PROBABILITY_SLACK):
        low, high = 0.0, 1.0
    histograms = {}
    for label, files in series.items():
        histogram = Histogram.linear(low, high, bins)
        for batch in iter_columns(files, [column]):
            histogram.add(batch.column(column).to_numpy(zero_copy_only=False))
        histograms[label] = histogram
    return histograms


def cluster_counts(stage_dir: Path) -> Counter:
    """Cluster key -> number of documents in it, over a dedup stage's `clusters/` tables."""
    members: Counter = Counter()
    for batch in iter_columns(cluster_files(stage_dir), ["cluster"]):
        keys, counts = np.unique(batch.column("cluster").to_numpy(), return_counts=True)
        members.update(dict(zip(keys.tolist(), counts.tolist())))
    return members


def added_columns(files: list[Path]) -> dict[str, pa.DataType]:
    """Columns that stages added to the document schema (and that are not side-output bookkeeping)."""
    columns: dict[str, pa.DataType] = {}
    for path in files:
        for item in pq.read_schema(path):
            if item.name not in DOCUMENT_SCHEMA.names and item.name not in SIDE_COLUMNS:
                columns.setdefault(item.name, item.type)
    return columns


def collect_distributions(run: RunStats) -> Distributions:
    result = Distributions()
    stage_dirs = {name: run.out / name for name in run.folders if (run.out / name).is_dir()}
    removed = {name: files for name, path in stage_dirs.items() if (files := removed_files(path))}
    _lengths(run, stage_dirs, removed, result)
    _added_columns(stage_dirs, removed, result)
    for name, path in stage_dirs.items():
        if cluster_files(path):
            result.cluster_members[name] = cluster_counts(path)
        if token_files(path):
            _tokens(name, path, result)
    return result


def _last_text_stage(stage_dirs: dict[str, Path]) -> str | None:
    with_text = [name for name, path in stage_dirs.items() if name != "read" and kept_files(path)]
    return with_text[-1] if with_text else None


def _lengths(run: RunStats, stage_dirs: dict[str, Path], removed: dict[str, list[Path]], result: Distributions) -> None:
    for name, files in removed.items():
        result.removed_length[name] = text_lengths(files)
    last = _last_text_stage(stage_dirs)
    kept = text_lengths(kept_files(stage_dirs[last])) if last is not None else None
    if "read" in stage_dirs and kept_files(stage_dirs["read"]):
        result.length["input"] = text_lengths(kept_files(stage_dirs["read"]))
    elif kept is not None and _nothing_removed_after(run, last):
        total = kept
        for histogram in result.removed_length.values():
            total = total.merged(histogram)
        result.length["input (kept + removed)"] = total
    else:
        result.notes.append("input document lengths: the read stage wrote no documents (it ran fused with the "
                            "first stages) and later stages removed documents after the last text output")
    if kept is not None:
        result.length[f"kept after {last}"] = kept
        later = [name for name in run.folders[run.folders.index(last) + 1:] if name in run.stages]
        if later:
            result.notes.append(f"kept document lengths are those after {last}: {', '.join(later)} wrote no text "
                                "(fused with a later stage, or token shards)")
    else:
        result.notes.append("kept document lengths: no stage after read wrote its kept documents")
    missing = [name for name, s in run.stages.items() if s.docs_removed and name not in removed]
    if missing:
        result.notes.append(f"no removed/ documents for {', '.join(missing)} (run with output.keep_removed)")


def _nothing_removed_after(run: RunStats, stage: str) -> bool:
    later = run.folders[run.folders.index(stage) + 1:]
    return all(run.stages[name].docs_removed == 0 for name in later if name in run.stages)


def _added_columns(stage_dirs: dict[str, Path], removed: dict[str, list[Path]], result: Distributions) -> None:
    last = _last_text_stage(stage_dirs)
    series = {f"kept after {last}": kept_files(stage_dirs[last])} if last is not None else {}
    series.update({f"removed by {name}": files for name, files in removed.items()})
    columns: dict[str, pa.DataType] = {}
    for files in series.values():
        for column, kind in added_columns(files).items():
            columns.setdefault(column, kind)
    kept_columns = added_columns(series[f"kept after {last}"]) if last is not None else {}
    missing = [column for column in columns if column not in kept_columns]
    if missing:
        result.notes.append(f"{', '.join(missing)}: only removed documents are shown; the kept ones are in no "
                            "text output (the stages that add these columns ran fused with later ones)")
    for column, kind in columns.items():
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            counts = {label: value_counts(files, column) for label, files in series.items()}
            result.categories[column] = {label: c for label, c in counts.items() if c}
        elif pa.types.is_floating(kind) or pa.types.is_integer(kind):
            histograms = score_histograms(series, column)
            result.scores[column] = {label: h for label, h in histograms.items() if h.total}


def _tokens(name: str, stage_dir: Path, result: Distributions) -> None:
    per_document = token_bins()
    per_shard = []
    for path in token_files(stage_dir):
        if not path.is_file():
            result.notes.append(f"{name}: token shard {path.name} listed in the manifest is missing")
            continue
        total = 0
        for counts in iter_token_counts(path):
            values = counts.to_numpy(zero_copy_only=False)
            per_document.add(values)
            total += int(values.sum())
        per_shard.append((path.name, total))
    result.tokens_per_document[name] = per_document
    result.tokens_per_shard[name] = per_shard
    if read_manifest(stage_dir) is None:
        result.notes.append(f"{name}: no dataset/manifest.json; token counts are from the per-input shards")
