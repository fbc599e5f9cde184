"""Filters inside real runs: the ready fineweb-like recipe, `removed/` with reasons, stats, local vs Ray."""

import json
import os
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from filter_helpers import REPO, SAMPLE
from gristmill.pipeline.cli import app as root_app
from gristmill.pipeline.recipe import load_recipe
from gristmill.pipeline.run import run_recipe
from gristmill.pipeline.stats_table import load_run_stats, rule_rows
from typer.testing import CliRunner

SHARDS = [str(SAMPLE / "part-00003.jsonl.gz"), str(SAMPLE / "part-00004.jsonl")]


def fineweb_like(tmp_path: Path, lid_model: Path, out: str, *, drop: str = "", executor: str = "local") -> Path:
    """recipes/fineweb-like.toml pointed at two sample shards and the suite's language-ID model."""
    text = (REPO / "recipes" / "fineweb-like.toml").read_text(encoding="utf-8")
    text = text.replace('paths = ["data/sample/*.jsonl*"]', f"paths = {json.dumps(SHARDS)}")
    text = text.replace('model_path = "models/lid-sample.bin"', f"model_path = {json.dumps(str(lid_model))}")
    text = text.replace('path = "out/fineweb-like"', f"path = {json.dumps(str(tmp_path / out))}")
    text = text.replace('kind = "local"', f"kind = {json.dumps(executor)}")
    if drop:
        text = text.replace(drop, "")
    recipe = tmp_path / f"{out}.toml"
    recipe.write_text(text, encoding="utf-8")
    return recipe


def read_parts(folder: Path) -> dict[str, list]:
    """Every column of the part-*.parquet files in `folder`, concatenated; {} when there are none."""
    parts = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(p) for p in parts]).to_pydict() if parts else {}


def part_rows(folder: Path) -> dict[str, list[dict]]:
    return {p.name: pq.read_table(p).to_pylist() for p in sorted(folder.glob("part-*.parquet"))}


def test_fineweb_like_recipe_runs_and_explains_every_removal(tmp_path: Path, lid_model: Path) -> None:
    recipe = fineweb_like(tmp_path, lid_model, "run")
    stats = run_recipe(load_recipe(recipe))
    stages = ["language_id", "gopher_repetition", "gopher_quality", "c4_quality", "fineweb_quality", "minhash_dedup"]
    assert list(stats) == ["read", *stages]
    for name in stages[:-1]:
        stats[name].check_balance()
        removed = read_parts(tmp_path / "run" / name / "removed")
        assert Counter(removed.get("reason", [])) == stats[name].removed
        assert len(removed.get("value", [])) == stats[name].docs_removed
    assert stats["language_id"].removed and stats["gopher_quality"].removed
    assert stats["minhash_dedup"].docs_in == stats["fineweb_quality"].docs_out
    kept = read_parts(tmp_path / "run" / "fineweb_quality")
    assert set(kept["lang"]) == {"en"} and min(kept["lang_score"]) >= 0.65
    assert load_run_stats(tmp_path / "run")["gopher_quality"].removed == stats["gopher_quality"].removed
    rules = CliRunner().invoke(root_app, ["stats", str(tmp_path / "run")])
    assert rules.exit_code == 0, rules.output
    for stage, rule, count, of_stage, _ in rule_rows(stats):
        assert of_stage == pytest.approx(count / stats[stage].docs_in)
        assert rule in rules.output


@pytest.mark.skipif(os.cpu_count() is not None and os.cpu_count() < 2, reason="Ray test wants two CPUs")
def test_ray_and_local_give_identical_output(tmp_path: Path, lid_model: Path) -> None:
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    minhash = '[[stages]]\ntype = "minhash_dedup"\n'
    adapter = ('\n[[stages]]\ntype = "datatrove_filter"\nfilter = "datatrove.pipeline.filters:FineWebQualityFilter"\n'
               'kwargs = { short_line_thr = 0.5 }\n')
    recipes = []
    for executor in ("local", "ray"):
        recipe = fineweb_like(tmp_path, lid_model, executor, drop=minhash, executor=executor)
        recipe.write_text(recipe.read_text(encoding="utf-8") + adapter, encoding="utf-8")
        recipes.append(recipe)
    local = run_recipe(load_recipe(recipes[0]))
    on_ray = run_recipe(load_recipe(recipes[1]))
    assert {k: v.to_dict()["removed"] for k, v in local.items()} == {k: v.to_dict()["removed"] for k, v in on_ray.items()}
    assert local["datatrove_filter"].docs_in > 0
    assert part_rows(tmp_path / "local" / "datatrove_filter") == part_rows(tmp_path / "ray" / "datatrove_filter")
