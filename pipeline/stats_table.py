"""Renders a run's per-stage stats as a terminal table (`gristmill run`, `gristmill stats`)."""

from pathlib import Path

from rich.console import Console
from rich.table import Table

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.plan import planned_stages
from gristmill.pipeline.stats import StageStats, read_stage_stats


def load_run_stats(out: Path) -> dict[str, StageStats]:
    """Stats of every stage folder of a run, in pipeline order, read without writing into the run."""
    if not out.is_dir():
        raise UserError(f"no such run folder: {out}")
    order = planned_stages(out)
    folders = order + sorted(p.name for p in out.iterdir() if p.is_dir() and p.name not in order)
    stats = {name: merged for name in folders if (merged := read_stage_stats(out / name)) is not None}
    if not stats:
        raise UserError(f"{out} holds no stats (is it a gristmill run folder?)")
    return stats


def rule_rows(stats: dict[str, StageStats]) -> list[tuple[str, str, int, float, float]]:
    """(stage, rule, documents removed, share of the stage's input, share of the run's input), in pipeline order."""
    corpus = next(iter(stats.values())).docs_in if stats else 0
    rows = []
    for stage, stage_stats in stats.items():
        for rule, count in sorted(stage_stats.removed.items(), key=lambda item: (-item[1], item[0])):
            rows.append((stage, rule, count, count / max(stage_stats.docs_in, 1), count / max(corpus, 1)))
    return rows


def print_stats(stats: dict[str, StageStats]) -> None:
    """The per-stage table, then every removal rule with its count and rates."""
    table = Table(title="gristmill run")
    for column in ("stage", "docs in", "docs out", "removed", "errors", "MB in", "MB out", "docs/s", "top reasons"):
        table.add_column(column, justify="left" if column in ("stage", "top reasons") else "right")
    for name, s in stats.items():
        reasons = (s.removed + s.errors).most_common(3)
        table.add_row(
            name,
            f"{s.docs_in:,}",
            f"{s.docs_out:,}",
            f"{s.docs_removed:,}",
            f"{s.docs_errors:,}",
            f"{s.bytes_in / 2**20:,.2f}",
            f"{s.bytes_out / 2**20:,.2f}",
            f"{s.docs_in / s.wall_s:,.0f}" if s.wall_s > 0 else "-",
            ", ".join(f"{reason} {count:,}" for reason, count in reasons),
        )
    rules = Table(title="removals by rule")
    for column in ("stage", "rule", "removed", "% of stage input", "% of corpus"):
        rules.add_column(column, justify="left" if column in ("stage", "rule") else "right")
    for stage, rule, count, of_stage, of_corpus in rule_rows(stats):
        rules.add_row(stage, rule, f"{count:,}", f"{100 * of_stage:.2f}", f"{100 * of_corpus:.2f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    if rules.row_count:
        console.print(rules)
