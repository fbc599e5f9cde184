"""The one place for logs and progress bars: every module logs through `get_logger`, every long loop
through `progress`, so verbosity and output format are set once (GRISTMILL_LOG_LEVEL)."""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

_console = Console(stderr=True)
_configured = False


def get_logger(name: str) -> logging.Logger:
    """A logger under the `gristmill` root, configured on first use."""
    global _configured
    if not _configured:
        root = logging.getLogger("gristmill")
        root.setLevel(os.environ.get("GRISTMILL_LOG_LEVEL", "INFO").upper())
        root.addHandler(RichHandler(console=_console, show_path=False, markup=False))
        root.propagate = False
        _configured = True
    return logging.getLogger(name if name.startswith("gristmill") else f"gristmill.{name}")


@contextmanager
def progress(description: str, total: int | None) -> Iterator["ProgressBar"]:
    """A progress bar on stderr; `bar.advance(n, docs=k)` adds finished units and processed documents."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_console, transient=False,
                  disable=not _console.is_terminal and os.environ.get("GRISTMILL_PROGRESS") != "1") as bar:
        task = bar.add_task(description, total=total, rate="")
        yield ProgressBar(bar, task)


class ProgressBar:
    """Counts finished units (shards, steps) and documents, and shows documents per second."""

    def __init__(self, bar: Progress, task: int) -> None:
        self._bar, self._task, self._docs = bar, task, 0

    def advance(self, units: int = 1, docs: int = 0) -> None:
        self._docs += docs
        elapsed = self._bar.tasks[self._task].elapsed or 0.0
        rate = f"{self._docs / elapsed:,.0f} docs/s" if elapsed > 0 and self._docs else ""
        self._bar.update(self._task, advance=units, rate=rate)
