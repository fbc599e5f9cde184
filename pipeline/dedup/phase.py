"""Resumable phase tasks: a task whose completion marker exists (and whose files are all there) is skipped.

Every dedup phase is a top-level function over a picklable task with a `marker` path. The function
writes its files atomically and returns a JSON-able summary listing them; `resumable` stores that
summary as the marker, last, so a marker always means complete outputs (STYLE.md pattern 4).
"""

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.stats import write_json_atomic


class PhaseTask(Protocol):
    @property
    def marker(self) -> Path: ...


Task = TypeVar("Task", bound=PhaseTask)
Summary = dict[str, Any]


def resumable(fn: Callable[[Task], Summary]) -> Callable[[Task], Summary]:
    """Wraps a phase function: skip when done, else run it and write its summary as the marker.

    The summary's `files` (paths relative to the marker's grandparent folder) must all exist for a
    marker to count, so a deleted or lost output makes the task run again instead of failing later.
    """

    @functools.wraps(fn)
    def run(task: Task) -> Summary:
        marker = Path(task.marker)
        if marker.is_file():
            summary = json.loads(marker.read_text(encoding="utf-8"))
            root = marker.parent.parent
            if all((root / name).is_file() for name in summary.get("files", [])):
                return {**summary, "skipped": True}
        summary = fn(task)
        write_json_atomic(marker, summary)
        return summary

    return run


def marker_path(phase_dir: Path | str, index: int) -> Path:
    return Path(phase_dir) / "done" / f"task-{index:05d}.json"


def check_plan(stage_dir: Path, inputs: list[Path], config: Any) -> None:
    """Refuses to resume a stage folder made from other inputs or options (STYLE.md pattern 5)."""
    options = asdict(config) if is_dataclass(config) else config
    plan = {"inputs": [str(path) for path in inputs], "config": options}
    digest = hashlib.sha256(json.dumps(plan, sort_keys=True, default=str).encode()).hexdigest()
    path = stage_dir / "plan.json"
    if path.is_file():
        if json.loads(path.read_text(encoding="utf-8")).get("digest") != digest:
            raise UserError(
                f"{stage_dir} holds a dedup run with other inputs or options; "
                "delete the folder or choose another output path to start over"
            )
        return
    write_json_atomic(path, {"digest": digest, **plan})
