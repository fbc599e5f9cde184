"""The Ray executor: same output as local, and a worker that dies mid-shard is retried by Ray."""

import os
from pathlib import Path

import pytest

from gristmill.pipeline.recipe import load_recipe
from gristmill.pipeline.run import run_recipe

from pipeline_helpers import HERE, MIN_CHARS, part_bytes, write_recipe

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module: 2 CPUs, no dashboard; workers find the test stages via PYTHONPATH."""
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), saved]))
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def test_ray_and_local_write_identical_shards(local_ray, tmp_path: Path, corpus: Path) -> None:
    local = write_recipe(tmp_path / "l.toml", str(corpus), tmp_path / "local", [MIN_CHARS])
    on_ray = write_recipe(tmp_path / "r.toml", str(corpus), tmp_path / "ray", [MIN_CHARS], workers=2, kind="ray")
    run_recipe(load_recipe(local))
    stats = run_recipe(load_recipe(on_ray))
    assert part_bytes(tmp_path / "ray") == part_bytes(tmp_path / "local")
    assert stats["min_chars"].docs_in == 240


def test_worker_killed_mid_shard_is_retried_without_loss_or_duplicates(
    local_ray, tmp_path: Path, corpus: Path
) -> None:
    flag = tmp_path / "died-once"
    stages = [MIN_CHARS, {"type": "stages_for_tests:DieOnce", "shard": 1, "flag_file": str(flag)}]
    clean = write_recipe(tmp_path / "c.toml", str(corpus), tmp_path / "clean", stages)
    flag.write_text("already died: the in-process reference run must not kill pytest\n")
    run_recipe(load_recipe(clean))
    flag.unlink()
    killed = write_recipe(tmp_path / "k.toml", str(corpus), tmp_path / "killed", stages, workers=2, kind="ray")
    stats = run_recipe(load_recipe(killed))
    assert flag.is_file(), "the worker was never killed, so the test proved nothing"
    assert part_bytes(tmp_path / "killed") == part_bytes(tmp_path / "clean")
    assert stats["die_once"].docs_in == stats["die_once"].docs_out == stats["min_chars"].docs_out


def test_each_task_sizes_its_thread_pools_to_its_one_cpu(local_ray) -> None:
    from gristmill.pipeline.executors.base import ExecutorConfig
    from gristmill.pipeline.executors.ray import RayExecutor
    from stages_for_tests import thread_pool_sizes

    seen = RayExecutor(ExecutorConfig(kind="ray", workers=2)).map(thread_pool_sizes, [0, 1, 2], "threads")
    expected = {name: os.environ.get(name, "1") for name in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS")}
    assert seen == [expected] * 3
