"""The default executor: in this process for one worker, a spawn-started process pool for more."""

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

from gristmill.pipeline.executors.base import Executor, ExecutorConfig, documents_of, limit_worker_threads
from gristmill.pipeline.log import progress

T = TypeVar("T")
R = TypeVar("R")


class LocalExecutor(Executor):
    def __init__(self, config: ExecutorConfig) -> None:
        self.workers = config.workers
        self._pool: ProcessPoolExecutor | None = None

    def map(self, fn: Callable[[T], R], tasks: Sequence[T], description: str) -> list[R]:
        results: list[R | None] = [None] * len(tasks)
        with progress(description, total=len(tasks)) as bar:
            if self.workers == 1:
                for index, task in enumerate(tasks):
                    results[index] = fn(task)
                    bar.advance(docs=documents_of(results[index]))
            else:
                pool = self._get_pool()
                futures = {pool.submit(fn, task): index for index, task in enumerate(tasks)}
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.advance(docs=documents_of(results[futures[future]]))
        return results  # type: ignore[return-value]

    def _get_pool(self) -> ProcessPoolExecutor:
        # spawn, not fork: the driver may hold threads (pyarrow, torch) that fork would copy mid-lock.
        if self._pool is None:
            cpus = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(
                self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=limit_worker_threads,
                initargs=(cpus,),
            )
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None
