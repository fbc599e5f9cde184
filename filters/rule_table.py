"""Per-rule removal counts and rates of a run: which rule removed how much, of the stage and of the corpus."""

from gristmill.pipeline.stats import StageStats
from rich.console import Console
from rich.table import Table


def rule_rows(stats: dict[str, StageStats]) -> list[tuple[str, str, int, float, float]]:
    """(stage, rule, documents removed, share of the stage's input, share of the run's input), in pipeline order."""
    corpus = next(iter(stats.values())).docs_in if stats else 0
    rows = []
    for stage, stage_stats in stats.items():
        for rule, count in sorted(stage_stats.removed.items(), key=lambda item: (-item[1], item[0])):
            rows.append((stage, rule, count, count / max(stage_stats.docs_in, 1), count / max(corpus, 1)))
    return rows


def print_rule_table(stats: dict[str, StageStats]) -> None:
    table = Table(title="removals by rule")
    for column in ("stage", "rule", "removed", "% of stage input", "% of corpus"):
        table.add_column(column, justify="left" if column in ("stage", "rule") else "right")
    for stage, rule, count, of_stage, of_corpus in rule_rows(stats):
        table.add_row(stage, rule, f"{count:,}", f"{100 * of_stage:.2f}", f"{100 * of_corpus:.2f}")
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    console.print(table)
