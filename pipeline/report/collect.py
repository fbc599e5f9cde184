"""The numbers of a run's funnel, from its stats files: per stage in pipeline order, with what is missing.

A run may be partial (interrupted, still going, or copied without some folders); every gap becomes a
sentence in `notes` instead of an exception, so the report still renders.
"""

from dataclasses import dataclass, field
from pathlib import Path

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.plan import planned_stages
from gristmill.pipeline.stats import StageStats
from gristmill.pipeline.stats_table import load_run_stats


@dataclass
class RunStats:
    """Stats of every stage folder that has them, in pipeline order, and the stages the plan names."""

    out: Path
    planned: list[str]
    """Stage folders in pipeline order: `read` first, then plan.json's stages."""
    stages: dict[str, StageStats]
    notes: list[str] = field(default_factory=list)

    @property
    def folders(self) -> list[str]:
        """Every stage folder worth looking into: the planned ones, then any others that have stats."""
        return [*self.planned, *(name for name in self.stages if name not in self.planned)]

    @property
    def removed_by_rule(self) -> list[tuple[str, str, int]]:
        """(stage, reason, documents) for every removal rule of every stage, in pipeline order."""
        return [(name, reason, count) for name, s in self.stages.items() for reason, count in sorted(s.removed.items())]

    @property
    def errors_by_kind(self) -> list[tuple[str, str, int]]:
        return [(name, kind, count) for name, s in self.stages.items() for kind, count in sorted(s.errors.items())]


def load_run(out: Path) -> RunStats:
    """Reads (merging per-shard stats where needed) every stage's stats and lists what is missing or odd."""
    if not out.is_dir():
        raise UserError(f"no such run folder: {out}")
    planned = planned_stages(out)
    try:
        stages = load_run_stats(out)
    except UserError:
        stages = {}
    run = RunStats(out=out, planned=planned, stages=stages)
    if not (out / "plan.json").is_file():
        run.notes.append("plan.json is missing: stages are shown in folder order")
    if not stages:
        run.notes.append(f"{out} holds no pipeline stats: the funnel, distributions and samples are empty")
        return run
    run.notes += [f"stage {name}: no stats (not run yet, or interrupted before a shard finished)"
                  for name in planned if name not in stages]
    run.notes += _accounting_notes(stages)
    return run


def _accounting_notes(stages: dict[str, StageStats]) -> list[str]:
    """Stages whose counts do not add up, or that did not see every document the stage before kept."""
    notes = []
    for name, s in stages.items():
        accounted = s.docs_out + s.docs_removed + s.docs_errors
        if accounted != s.docs_in:
            notes.append(f"stage {name}: {s.docs_in:,} documents in but {accounted:,} out, removed or failed")
    names = list(stages)
    for before, after in zip(names, names[1:]):
        if stages[before].docs_out != stages[after].docs_in:
            notes.append(
                f"stage {after}: {stages[after].docs_in:,} documents in, but {before} kept "
                f"{stages[before].docs_out:,} (a partial run?)"
            )
    return notes
