from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from gristmill.pipeline.report.collect import load_run
from gristmill.pipeline.report.distributions import collect_distributions, length_bins, token_bins
from gristmill.pipeline.report.histogram import Histogram


def table(files: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(path) for path in files])


def reference(values: np.ndarray, bins: Histogram) -> list[int]:
    edges = bins.edges.copy()
    edges[-1] = max(values.max(initial=0), edges[-2]) + 1
    counts, _ = np.histogram(np.clip(values, edges[0], edges[-1] - 0.5), bins=edges)
    return counts.tolist()


def text_lengths(files: list[Path]) -> np.ndarray:
    return pc.utf8_length(table(files).column("text")).to_numpy()


def test_lengths_match_documents_and_stats(report_run) -> None:
    out = report_run.out
    run = load_run(out)
    found = collect_distributions(run)

    assert set(found.removed_length) == {"tag_language", "min_chars", "exact_dedup"}
    everything = []
    for stage, histogram in found.removed_length.items():
        lengths = text_lengths(sorted((out / stage / "removed").glob("*.parquet")))
        assert histogram.counts.tolist() == reference(lengths, length_bins())
        assert histogram.total == run.stages[stage].docs_removed
        everything.append(lengths)
    kept = found.length["kept after exact_dedup"]
    kept_lengths = text_lengths(sorted((out / "exact_dedup").glob("part-*.parquet")))
    assert kept.counts.tolist() == reference(kept_lengths, length_bins())
    assert kept.total == run.stages["exact_dedup"].docs_out
    # read/ wrote nothing (it ran fused with the first stages), so the input is kept + removed
    whole = found.length["input (kept + removed)"]
    assert whole.counts.tolist() == reference(np.concatenate([kept_lengths, *everything]), length_bins())
    assert whole.total == run.stages["read"].docs_out


def test_added_columns_kept_and_removed(report_run) -> None:
    out = report_run.out
    found = collect_distributions(load_run(out))
    series = {"kept after exact_dedup": sorted((out / "exact_dedup").glob("part-*.parquet"))} | {
        f"removed by {stage}": sorted((out / stage / "removed").glob("*.parquet"))
        for stage in ("tag_language", "min_chars", "exact_dedup")
    }
    assert set(found.categories) == {"lang"} and set(found.scores) == {"lang_score"}
    for label, files in series.items():
        rows = table(files)
        assert found.categories["lang"][label] == Counter(rows.column("lang").to_pylist())
        scores = found.scores["lang_score"][label]
        assert scores.counts.tolist() == reference(rows.column("lang_score").to_numpy(), scores)
    removed_by_score = found.scores["lang_score"]["removed by tag_language"]
    assert removed_by_score.edges[0] >= 0.0 and removed_by_score.total > 0


def test_cluster_sizes_are_the_planted_groups(report_run) -> None:
    found = collect_distributions(load_run(report_run.out))
    assert found.cluster_sizes == {"exact_dedup": Counter(report_run.duplicate_groups)}


def test_tokens_per_document_and_shard(report_run) -> None:
    dataset = report_run.out / "tokenize" / "dataset"
    found = collect_distributions(load_run(report_run.out))
    shards = sorted(dataset.glob("part-*.arrow"))
    counts = [pa.ipc.open_file(pa.memory_map(str(path))).read_all().column("num_tokens").to_numpy() for path in shards]
    assert found.tokens_per_document["tokenize"].counts.tolist() == reference(np.concatenate(counts), token_bins())
    assert found.tokens_per_shard["tokenize"] == [(path.name, int(c.sum())) for path, c in zip(shards, counts)]
