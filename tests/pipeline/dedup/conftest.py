"""Fixtures for the dedup tests: the repository's sample corpus as document shards."""

from pathlib import Path

import pytest

from gristmill.pipeline.executors import ExecutorConfig, make_executor
from gristmill.pipeline.readers import InputConfig, expand_paths
from gristmill.pipeline.shard_task import ShardTask, run_shard

from dedup_helpers import SAMPLE


@pytest.fixture(scope="session")
def sample_corpus(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """data/sample read once into parquet shards, the form a dedup stage receives from `gristmill run`."""
    if not SAMPLE.is_dir():
        pytest.skip("data/sample is not there")
    out = tmp_path_factory.mktemp("sample")
    files = expand_paths([str(SAMPLE)])
    tasks = [ShardTask(i, path, InputConfig(), (), str(out), "parquet", False) for i, path in enumerate(files)]
    with make_executor(ExecutorConfig()) as executor:
        results = executor.map(run_shard, tasks, description="read sample")
    return [out / "read" / result.output for result in results]
