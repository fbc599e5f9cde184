"""Builds the report page: numbers and samples from a run folder (and a training run's metrics), plotly
figures, one jinja2 template with autoescaping, written atomically as one self-contained HTML file."""

import datetime
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import plotly.graph_objects as go
from markupsafe import Markup
from plotly.offline import get_plotlyjs

from gristmill.pipeline.errors import UserError
from gristmill.pipeline.report import figures
from gristmill.pipeline.report.collect import RunStats, load_run
from gristmill.pipeline.report.distributions import Distributions, collect_distributions
from gristmill.pipeline.report.samples import ClusterSample, Sample, cluster_samples, error_samples, removed_samples
from gristmill.pipeline.report.training import TrainingMetrics, load_metrics

TEMPLATE = "report.html.j2"


@dataclass
class StageSamples:
    stage: str
    removed: dict[str, list[Sample]] = field(default_factory=dict)
    clusters: list[ClusterSample] = field(default_factory=list)
    errors: dict[str, list[Sample]] = field(default_factory=dict)


def _html(figure: go.Figure) -> Markup:
    """A figure as a div and a call into the page's one copy of plotly.js (its JSON escapes `<` and `/`)."""
    return Markup(figure.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False}))


def distribution_figures(found: Distributions) -> list[Markup]:
    shown = []
    if found.length:
        shown.append(figures.histogram_figure(found.length, "Document length, before and after", "characters"))
    if found.removed_length:
        shown.append(figures.histogram_figure(found.removed_length, "Length of removed documents, by stage",
                                              "characters", stacked=True))
    shown += [figures.category_figure(series, f"{column}: kept and removed", column)
              for column, series in found.categories.items() if series]
    shown += [figures.histogram_figure(series, f"{column}: kept and removed", column, stacked=True)
              for column, series in found.scores.items() if series]
    if found.cluster_sizes:
        shown.append(figures.cluster_sizes_figure(found.cluster_sizes))
    if found.tokens_per_document:
        shown.append(figures.histogram_figure(found.tokens_per_document, "Tokens per document", "tokens"))
        shown.append(figures.tokens_per_shard_figure(found.tokens_per_shard))
    return [_html(figure) for figure in shown]


def absent_distributions(found: Distributions) -> list[str]:
    """Distributions the page leaves out because the run has nothing to draw them from."""
    absent = []
    if not found.categories and not found.scores:
        absent.append("language and score columns (no stage added any)")
    if not found.cluster_members:
        absent.append("duplicate clusters (no dedup stage)")
    if not found.tokens_per_document:
        absent.append("token counts (no tokenize stage)")
    return absent


def stage_samples(run: RunStats, cluster_members: dict[str, Counter]) -> list[StageSamples]:
    """Examples of every stage folder that has removed documents, duplicate clusters or read errors."""
    found = []
    for name in run.folders:
        stage_dir = run.out / name
        if not stage_dir.is_dir():
            continue
        stats = run.stages.get(name)
        samples = StageSamples(
            stage=name,
            removed=removed_samples(stage_dir, sorted(stats.removed) if stats is not None else None),
            clusters=cluster_samples(stage_dir, cluster_members[name]) if name in cluster_members else [],
            errors=error_samples(stage_dir),
        )
        if samples.removed or samples.clusters or samples.errors:
            found.append(samples)
    return found


def page_context(out: Path, metrics_path: Path | None) -> dict:
    """Everything the template shows; a folder with neither pipeline stats nor metrics is a user error."""
    run = load_run(out)
    metrics_path = metrics_path or (out / "metrics.jsonl" if (out / "metrics.jsonl").is_file() else None)
    metrics: TrainingMetrics | None = load_metrics(metrics_path) if metrics_path is not None else None
    if not run.stages and metrics is None:
        raise UserError(f"{out} holds neither pipeline stats nor a metrics.jsonl (is it a gristmill run folder?)")
    context = {"out": str(out), "generated": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), "run": run,
               "notes": list(run.notes), "training": None}
    if run.stages:
        found = collect_distributions(run)
        context["notes"] += found.notes
        context.update(funnel=_html(figures.funnel_figure(run)), removals=_html(figures.removals_figure(run)),
                       distributions=distribution_figures(found), absent=absent_distributions(found),
                       samples=stage_samples(run, found.cluster_members))
    if metrics is not None:
        context["notes"] += metrics.notes
        context["training"] = _html(figures.training_figure(metrics))
    else:
        context["notes"].append("no training metrics: pass --metrics PATH/metrics.jsonl (or put it in the run folder)")
    return context


def render_page(context: dict) -> str:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("gristmill.pipeline.report", "data"),
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE).render(plotly_js=Markup(get_plotlyjs()), **context)


def write_report(out: Path, output: Path, metrics_path: Path | None = None) -> Path:
    """Writes the report under a temporary name and renames it, so a reader never opens half a page."""
    page = render_page(page_context(out, metrics_path))
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.{os.getpid()}.tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, output)
    return output
