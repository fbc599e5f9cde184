"""`gristmill report OUT/`: the command function; the root CLI mounts it."""

from pathlib import Path
from typing import Annotated, Optional

import typer


def report(
    out: Annotated[Path, typer.Argument(help="A pipeline run's output folder (or a training run's out_dir).")],
    output: Annotated[
        Optional[Path], typer.Option("--output", "-o", help="The HTML file to write (default: OUT/report.html).")
    ] = None,
    metrics: Annotated[
        Optional[Path], typer.Option(help="A training run's metrics.jsonl (default: OUT/metrics.jsonl if present).")
    ] = None,
) -> None:
    """Write one self-contained HTML page: funnel, distributions, removed samples, training curves."""
    from gristmill.pipeline.report.render import write_report

    written = write_report(out, output or out / "report.html", metrics)
    typer.echo(f"report: {written}")
