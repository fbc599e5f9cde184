"""Ray executor: each task is a Ray task; Ray schedules it, retries it if its worker dies, and
returns its result through the object store. Connects to RAY_ADDRESS when set, else starts a local Ray."""

import os
from collections.abc import Callable, Sequence
from typing import TypeVar

from gristmill.pipeline.executors.base import Executor, ExecutorConfig, documents_of, limit_worker_threads
from gristmill.pipeline.log import get_logger, progress

T = TypeVar("T")
R = TypeVar("R")

log = get_logger(__name__)

TASK_CPUS = 1
"""CPUs each task asks Ray for; its native thread pools are sized to match."""


def _run_task(fn: Callable[[T], R], task: T) -> R:
    limit_worker_threads(TASK_CPUS)
    return fn(task)


class RayExecutor(Executor):
    def __init__(self, config: ExecutorConfig) -> None:
        import ray

        self.config = config
        self._started_here = False
        if not ray.is_initialized():
            address = os.environ.get("RAY_ADDRESS")
            if address:
                ray.init(address=address, log_to_driver=True)
            else:
                ray.init(num_cpus=config.workers, include_dashboard=False, log_to_driver=True)
                self._started_here = True
            log.info("ray: %s", ray.cluster_resources())

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], description: str) -> list[R]:
        import ray

        remote = ray.remote(num_cpus=TASK_CPUS, max_retries=self.config.max_retries)(_run_task)
        refs = [remote.remote(fn, task) for task in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[R | None] = [None] * len(tasks)
        pending = list(refs)
        with progress(description, total=len(tasks)) as bar:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    results[index[ref]] = ray.get(ref)
                    bar.advance(docs=documents_of(results[index[ref]]))
        return results  # type: ignore[return-value]

    def close(self) -> None:
        import ray

        if self._started_here and ray.is_initialized():
            ray.shutdown()
