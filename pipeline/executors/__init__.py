"""Executors schedule shard tasks; stages compute. Local and Ray run the same tasks with the same results."""

from gristmill.pipeline.executors.base import Executor, ExecutorConfig, make_executor

__all__ = ["Executor", "ExecutorConfig", "make_executor"]
