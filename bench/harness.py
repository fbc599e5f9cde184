"""Shared timing, memory and reporting helpers for the GPU benchmarks under bench/."""

import datetime
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import torch


def machine() -> str:
    """The GPU name and software versions, for the RESULTS line."""
    import triton

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return f"{gpu}, torch {torch.__version__}, triton {triton.__version__}"


def today() -> str:
    return datetime.date.today().isoformat()


def time_ms(fn: Callable[[], object], warmup_ms: int = 100, rep_ms: int = 500) -> float:
    """Median milliseconds of `fn` on the GPU (CUDA events through triton's do_bench)."""
    from triton.testing import do_bench

    return do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median")


def peak_memory_mb(fn: Callable[[], object]) -> float:
    """Peak GPU memory allocated during one call of `fn`, above what was allocated before it."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table; floats printed with 3 significant digits."""

    def cell(value: object) -> str:
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_stamp() -> str:
    """Date, machine and git revision: the first words of a report, so every number says where it came from."""
    return f"{today()} · {machine()} · rev {git_revision()}"


def write_report(lines: list[str], out: str | None) -> str:
    """Joins the report's lines and, when `out` is given, writes them there; returns the text to print."""
    report = "\n".join(lines)
    if out:
        with open(out, "w") as handle:
            handle.write(report + "\n")
    return report


def print_and_append(report: str, out: Path | None) -> None:
    """Prints a report and, when `out` is given, appends it there, so several calls build one results file."""
    print(report)
    if out:
        with out.open("a") as handle:
            handle.write(report + "\n\n")


def git_revision() -> str:
    """The measured code's commit: $GRISTMILL_REV when set (a tree shipped without its .git), else git's HEAD."""
    if os.environ.get("GRISTMILL_REV"):
        return os.environ["GRISTMILL_REV"]
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
