from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from gristmill.pipeline.report.collect import load_run
from gristmill.pipeline.report.distributions import cluster_counts
from gristmill.pipeline.report import samples as samples_module
from gristmill.pipeline.report.outputs import iter_columns
from gristmill.pipeline.report.samples import cluster_samples, error_samples, removed_samples
from report_corpus import PLANTED_SCRIPT


def removed_table(stage_dir: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(path) for path in sorted((stage_dir / "removed").glob("*.parquet"))])


def test_removed_samples_per_rule_are_removed_documents_cut_short(report_run) -> None:
    run = load_run(report_run.out)
    for stage in ("tag_language", "min_chars", "exact_dedup"):
        stage_dir = report_run.out / stage
        rows = {row["id"]: row for row in removed_table(stage_dir).to_pylist()}
        found = removed_samples(stage_dir, sorted(run.stages[stage].removed), per_reason=2, max_chars=50)
        assert set(found) == set(run.stages[stage].removed)
        for reason, samples in found.items():
            assert len(samples) == min(2, run.stages[stage].removed[reason])
            for sample in samples:
                row = rows[sample.id]
                assert row["reason"] == reason
                assert sample.text == row["text"][:50] and sample.chars == len(row["text"])
                assert sample.truncated == (len(row["text"]) > 50)
    short = removed_samples(report_run.out / "min_chars", ["too_short"], per_reason=1)
    assert short["too_short"][0].text == PLANTED_SCRIPT


def test_cluster_samples_show_the_kept_copy_then_removed_ones(report_run) -> None:
    stage_dir = report_run.out / "exact_dedup"
    clusters = cluster_samples(stage_dir, cluster_counts(stage_dir), clusters=2, members=2)
    largest = sorted(report_run.duplicate_groups, reverse=True)[:2]
    assert [cluster.size for cluster in clusters] == largest
    for cluster in clusters:
        first, *others = cluster.members
        assert first.kept and not any(sample.kept for sample in others)
        assert len(others) == min(2, cluster.size - 1)
        assert all(sample.text == first.text and sample.id.startswith("dup") for sample in others)


def test_error_samples_keep_the_raw_record(report_run) -> None:
    errors = error_samples(report_run.out / "read")
    [sample] = errors["malformed_json"]
    assert sample.text.startswith('{"id": "broken"') and sample.id.endswith(".jsonl:" + sample.id.split(":")[-1])


def test_sampling_stops_once_every_rule_has_its_examples(report_run, monkeypatch) -> None:
    stage_dir = report_run.out / "min_chars"
    rows = removed_table(stage_dir).num_rows
    batches = []

    def small_batches(files, columns, batch_rows=4):
        for batch in iter_columns(files, columns, batch_rows):
            batches.append(batch.num_rows)
            yield batch

    monkeypatch.setattr(samples_module, "iter_columns", small_batches)
    found = removed_samples(stage_dir, ["too_short"], per_reason=2)
    assert len(found["too_short"]) == 2
    assert rows > 8 and sum(batches) == 4
