import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.recipe import load_recipe
from gristmill.pipeline.run import run_recipe

from pipeline_helpers import MIN_CHARS, part_bytes, write_recipe

def test_run_accounts_for_every_document(tmp_path: Path, corpus: Path) -> None:
    (corpus / "broken.jsonl").write_bytes(b'{"id": "x", "text": "ok text long enough to pass the filter, surely yes"}\nnot json\n')
    recipe = write_recipe(tmp_path / "r.toml", str(corpus), tmp_path / "out", [MIN_CHARS])
    stats = run_recipe(load_recipe(recipe))
    read, kept = stats["read"], stats["min_chars"]
    assert read.docs_in == 242 and dict(read.errors) == {"malformed_json": 1} and read.docs_out == 241
    assert kept.docs_in == 241 and kept.docs_out + kept.removed["too_short"] == 241 and kept.docs_out > 0
    out_rows = sum(pq.read_metadata(p).num_rows for p in (tmp_path / "out/min_chars").glob("part-*.parquet"))
    assert out_rows == kept.docs_out
    removed = pq.read_table(tmp_path / "out/min_chars/removed").to_pylist()
    assert len(removed) == kept.removed["too_short"]
    assert all(r["reason"] == "too_short" and r["value"] < 60 for r in removed)
    merged = json.loads((tmp_path / "out/min_chars/stats.json").read_text())
    assert merged["docs_in"] == merged["docs_out"] + merged["docs_removed"] + merged["docs_errors"]


def test_rerun_skips_and_is_byte_identical(tmp_path: Path, corpus: Path) -> None:
    recipe = write_recipe(tmp_path / "r.toml", str(corpus), tmp_path / "out", [MIN_CHARS])
    run_recipe(load_recipe(recipe))
    first = part_bytes(tmp_path / "out")
    marker = tmp_path / "out/min_chars/done/part-00000.json"
    stamp = marker.stat().st_mtime_ns
    run_recipe(load_recipe(recipe))
    assert marker.stat().st_mtime_ns == stamp, "a finished shard was redone"
    assert part_bytes(tmp_path / "out") == first


def test_parallel_workers_give_the_same_output(tmp_path: Path, corpus: Path) -> None:
    one = write_recipe(tmp_path / "one.toml", str(corpus), tmp_path / "one", [MIN_CHARS], workers=1)
    two = write_recipe(tmp_path / "two.toml", str(corpus), tmp_path / "two", [MIN_CHARS], workers=2)
    run_recipe(load_recipe(one))
    run_recipe(load_recipe(two))
    assert part_bytes(tmp_path / "one") == part_bytes(tmp_path / "two")


def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path: Path, corpus: Path) -> None:
    stages = [MIN_CHARS, {"type": "stages_for_tests:CrashOnEnv"}]
    clean = write_recipe(tmp_path / "clean.toml", str(corpus), tmp_path / "clean", stages)
    run_recipe(load_recipe(clean))
    recipe = write_recipe(tmp_path / "r.toml", str(corpus), tmp_path / "out", stages)
    env = {**os.environ, "GRISTMILL_TEST_CRASH_SHARD": "2"}
    died = subprocess.run([sys.executable, "-m", "gristmill.pipeline", "run", str(recipe)], env=env,
                          capture_output=True, text=True)
    assert died.returncode == 3, died.stderr
    done = sorted(p.name for p in (tmp_path / "out/crash_on_env/done").iterdir())
    assert done == ["part-00000.json", "part-00001.json"]
    resumed = subprocess.run([sys.executable, "-m", "gristmill.pipeline", "run", str(recipe)],
                             capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert part_bytes(tmp_path / "out") == part_bytes(tmp_path / "clean")


def test_changed_recipe_refuses_to_resume(tmp_path: Path, corpus: Path) -> None:
    run_recipe(load_recipe(write_recipe(tmp_path / "a.toml", str(corpus), tmp_path / "out", [MIN_CHARS])))
    other = write_recipe(tmp_path / "b.toml", str(corpus), tmp_path / "out", [{**MIN_CHARS, "min_chars": 5}])
    with pytest.raises(UserError, match="different recipe"):
        run_recipe(load_recipe(other))


@pytest.mark.parametrize(
    ("stage", "message"),
    [
        ({"type": "no_such_stage"}, "error: unknown stage 'no_such_stage'"),
        ({**MIN_CHARS, "min_chars": "many"}, "error: stage 'min_chars'.min_chars: expected int, got 'many'"),
        ({**MIN_CHARS, "colour": 1}, "error: stage 'min_chars'.colour: unknown option"),
    ],
)
def test_cli_reports_user_mistakes_in_one_line(tmp_path: Path, corpus: Path, stage: dict, message: str) -> None:
    recipe = write_recipe(tmp_path / "r.toml", str(corpus), tmp_path / "out", [stage])
    result = subprocess.run([sys.executable, "-m", "gristmill.pipeline", "run", str(recipe)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_missing_recipe_and_stats_table(tmp_path: Path, corpus: Path) -> None:
    missing = subprocess.run([sys.executable, "-m", "gristmill.pipeline", "run", str(tmp_path / "nope.toml")],
                             capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip() == f"error: no such file: {tmp_path / 'nope.toml'}"
    folder = subprocess.run([sys.executable, "-m", "gristmill.pipeline", "run", str(corpus)],
                            capture_output=True, text=True)
    assert folder.returncode == 2 and folder.stderr.strip() == f"error: {corpus} is a folder; give a TOML file"
    run_recipe(load_recipe(write_recipe(tmp_path / "r.toml", str(corpus), tmp_path / "out", [MIN_CHARS])))
    shown = subprocess.run([sys.executable, "-m", "gristmill.pipeline", "stats", str(tmp_path / "out")],
                           capture_output=True, text=True)
    assert shown.returncode == 0 and "min_chars" in shown.stdout and "too_short" in shown.stdout


def test_a_damaged_output_shard_is_redone_on_rerun(tmp_path: Path, corpus: Path) -> None:
    """A completion marker is trusted only while its output file still holds the rows it recorded."""
    recipe = write_recipe(tmp_path / "r.toml", str(corpus), tmp_path / "out", [{"type": "stages_for_tests:KeepAsArrow"}])
    run_recipe(load_recipe(recipe))
    first = part_bytes(tmp_path / "out")
    shard = tmp_path / "out/keep_as_arrow/part-00001.arrow"
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    untouched = (tmp_path / "out/keep_as_arrow/done/part-00000.json").stat().st_mtime_ns
    run_recipe(load_recipe(recipe))
    assert part_bytes(tmp_path / "out") == first
    assert (tmp_path / "out/keep_as_arrow/done/part-00000.json").stat().st_mtime_ns == untouched


def test_pool_workers_size_their_thread_pools_to_their_share_of_the_cores() -> None:
    from gristmill.pipeline.executors.base import ExecutorConfig
    from gristmill.pipeline.executors.local import LocalExecutor
    from stages_for_tests import thread_pool_sizes

    with LocalExecutor(ExecutorConfig(workers=2)) as executor:
        seen = executor.map(thread_pool_sizes, [0, 1, 2], "threads")
    share = str(max(1, (os.cpu_count() or 1) // 2))
    expected = {name: os.environ.get(name, share) for name in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS")}
    assert seen == [expected] * 3
