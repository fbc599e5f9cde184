"""The executor interface and its configuration."""

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(kw_only=True)
class ExecutorConfig:
    kind: Literal["local", "ray"] = "local"
    """`local`: a process pool on this machine; `ray`: tasks on the cluster at RAY_ADDRESS, else a local Ray."""
    workers: int = 1
    """Parallel tasks (local: processes; ray: CPUs of a locally started Ray; a cluster uses its own)."""
    max_retries: int = 3
    """Ray only: how often a task whose worker died is re-run."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError(f"executor.workers must be >= 1, got {self.workers}")


class Executor(ABC):
    """Runs a picklable top-level function over tasks and returns results in task order."""

    @abstractmethod
    def map(self, fn: Callable[[T], R], tasks: Sequence[T], description: str) -> list[R]: ...

    def close(self) -> None:
        """Releases workers; the executor is unusable afterwards."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


THREAD_POOL_VARIABLES = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS")
"""Sizes of the native thread pools our libraries start: tokenizers' Rayon pool, OpenMP (torch, numpy)."""


def limit_worker_threads(cpus: int) -> None:
    """Sizes a worker's native thread pools to the CPUs it was given, before its first task runs; a value the
    user already set wins. Without it every worker starts one thread per core of the machine, and N workers
    oversubscribe the cores N times."""
    for variable in THREAD_POOL_VARIABLES:
        os.environ.setdefault(variable, str(cpus))


def make_executor(config: ExecutorConfig) -> Executor:
    if config.kind == "ray":
        from gristmill.pipeline.executors.ray import RayExecutor

        return RayExecutor(config)
    from gristmill.pipeline.executors.local import LocalExecutor

    return LocalExecutor(config)


def documents_of(result: object) -> int:
    """Documents a finished task processed (a `docs` attribute or key), for the progress bar's docs/s."""
    docs = result.get("docs", 0) if isinstance(result, dict) else getattr(result, "docs", 0)
    return int(docs or 0)
