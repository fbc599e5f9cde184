import json
import re
import shutil
from pathlib import Path

from gristmill.pipeline.report.collect import load_run
from gristmill.pipeline.report.render import render_page, page_context


def stats_files(out: Path) -> dict[str, dict]:
    return {path.parent.name: json.loads(path.read_text()) for path in out.glob("*/stats.json")}


def test_funnel_numbers_are_those_of_the_stats_files(report_run) -> None:
    run = load_run(report_run.out)
    expected = stats_files(report_run.out)
    assert list(run.stages) == ["read", "tag_language", "min_chars", "exact_dedup", "tokenize"]
    assert run.notes == []
    for name, stats in run.stages.items():
        recorded = expected[name]
        assert (stats.docs_in, stats.docs_out, stats.bytes_in, stats.bytes_out) == (
            recorded["docs_in"], recorded["docs_out"], recorded["bytes_in"], recorded["bytes_out"])
        assert dict(stats.removed) == recorded["removed"]
        assert dict(stats.errors) == recorded["errors"]
    assert run.removed_by_rule == [
        (name, reason, count) for name in run.stages for reason, count in sorted(expected[name]["removed"].items())
    ]
    assert run.errors_by_kind == [("read", "malformed_json", 1)]


def test_funnel_table_shows_the_stats(report_run) -> None:
    page = render_page(page_context(report_run.out, None))
    for name, recorded in stats_files(report_run.out).items():
        row = f"<tr><td>{name}</td><td>{recorded['docs_in']:,}</td><td>{recorded['docs_out']:,}</td>"
        assert row in page
    assert "malformed_json 1" in page


def test_partial_run_renders_and_says_what_is_missing(report_run, tmp_path: Path) -> None:
    out = tmp_path / "partial"
    shutil.copytree(report_run.out, out)
    shutil.rmtree(out / "exact_dedup")
    shutil.rmtree(out / "min_chars" / "removed")
    for path in (out / "tokenize" / "stats").glob("part-*.json"):
        if path.name != "part-00000.json":
            path.unlink()
    (out / "tokenize" / "stats.json").unlink()

    context = page_context(out, None)
    page = render_page(context)

    notes = " | ".join(context["notes"])
    assert "stage exact_dedup: no stats" in notes
    assert "no removed/ documents for min_chars" in notes
    assert re.search(r"stage tokenize: \d+ documents in, but min_chars kept \d+", notes)
    assert "no training metrics" in notes
    assert context["absent"] == ["duplicate clusters (no dedup stage)"]
    assert "Missing or partial" in page
    assert page.count('class="plotly-graph-div"') >= 3
