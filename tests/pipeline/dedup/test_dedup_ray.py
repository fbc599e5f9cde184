"""All four dedup stages in one recipe keep exactly the same documents on Ray as on the local executor."""

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from gristmill.pipeline.recipe import load_recipe
from gristmill.pipeline.run import run_recipe

from dedup_helpers import SAMPLE

ray = pytest.importorskip("ray")

STAGES = """
[[stages]]
type = "exact_dedup"
[[stages]]
type = "url_dedup"
[[stages]]
type = "line_dedup"
[[stages]]
type = "minhash_dedup"
verify = true
partitions = 4
"""


@pytest.fixture(scope="module")
def local_ray():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def recipe(path: Path, out: Path, kind: str, workers: int) -> Path:
    path.write_text(
        f'[input]\npaths = ["{SAMPLE}"]\n[output]\npath = "{out}"\n'
        f'[executor]\nkind = "{kind}"\nworkers = {workers}\n' + STAGES
    )
    return path


def kept(out: Path, stage: str) -> list[tuple[str, str]]:
    rows = [row for path in sorted((out / stage).glob("part-*.parquet")) for row in pq.read_table(path).to_pylist()]
    return sorted((row["id"], row["text"]) for row in rows)


def test_ray_and_local_keep_identical_documents(local_ray, tmp_path: Path) -> None:
    if not SAMPLE.is_dir():
        pytest.skip("data/sample is not there")
    local = run_recipe(load_recipe(recipe(tmp_path / "l.toml", tmp_path / "local", "local", 1)))
    on_ray = run_recipe(load_recipe(recipe(tmp_path / "r.toml", tmp_path / "ray", "ray", 2)))
    for stage in ("exact_dedup", "url_dedup", "line_dedup", "minhash_dedup"):
        assert kept(tmp_path / "ray", stage) == kept(tmp_path / "local", stage)
        assert on_ray[stage].to_dict()["removed"] == local[stage].to_dict()["removed"]
        on_ray[stage].check_balance()
    assert all(local[stage].docs_removed > 0 for stage in ("exact_dedup", "url_dedup", "minhash_dedup"))
