"""Plotly figures of a run's numbers; the page embeds plotly.js once, so the figures work offline."""

from collections import Counter

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from gristmill.pipeline.report.collect import RunStats
from gristmill.pipeline.report.histogram import Histogram
from gristmill.pipeline.report.training import TrainingMetrics

TOP_CATEGORIES = 20
"""Values shown of a categorical column (e.g. languages); the rest is summed as `other`."""


def _styled(figure: go.Figure, title: str, x_title: str = "", y_title: str = "", height: int = 380) -> go.Figure:
    figure.update_layout(
        template="plotly_white", title=title, height=height, margin=dict(l=60, r=20, t=60, b=50),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0),
    )
    figure.update_xaxes(title_text=x_title)
    figure.update_yaxes(title_text=y_title)
    return figure


def funnel_figure(run: RunStats) -> go.Figure:
    """Documents entering the first stage, then those each stage kept."""
    names = list(run.stages)
    first = run.stages[names[0]]
    labels = ["input", *names]
    docs = [first.docs_in, *(run.stages[name].docs_out for name in names)]
    figure = go.Figure(go.Funnel(y=labels, x=docs, textinfo="value+percent initial"))
    return _styled(figure, "Documents kept, stage by stage", height=120 + 32 * len(labels))


def removals_figure(run: RunStats) -> go.Figure:
    """Documents removed per rule, one colour per stage (named in each label), and errors per kind."""
    figure = go.Figure()
    for name in run.stages:
        rules = [(reason, count) for stage, reason, count in run.removed_by_rule if stage == name]
        errors = [(f"error: {kind}", count) for stage, kind, count in run.errors_by_kind if stage == name]
        if rules or errors:
            figure.add_trace(go.Bar(
                name=name, orientation="h", x=[count for _, count in rules + errors],
                y=[f"{name} · {reason}" for reason, _ in rules + errors],
            ))
    rows = len(run.removed_by_rule) + len(run.errors_by_kind)
    figure.update_yaxes(autorange="reversed")
    _styled(figure, "Documents removed per rule (and errors per kind)", "documents", height=140 + 24 * rows)
    return figure.update_layout(showlegend=False)


def histogram_figure(series: dict[str, Histogram], title: str, x_title: str, stacked: bool = False) -> go.Figure:
    """Bars of binned counts, one trace per series (all on the same bins), empty bins at both ends left out."""
    filled = np.flatnonzero(sum(h.counts for h in series.values()))
    shown = slice(filled[0], filled[-1] + 1) if len(filled) else slice(None)
    figure = go.Figure([
        go.Bar(name=label, x=h.labels()[shown], y=h.counts[shown].tolist()) for label, h in series.items()
    ])
    figure.update_layout(barmode="stack" if stacked else "group")
    return _styled(figure, title, x_title, "documents")


def category_figure(series: dict[str, Counter], title: str, x_title: str) -> go.Figure:
    """Stacked counts of the most common values over all series; the rest summed as `other`."""
    total = sum(series.values(), Counter())
    shown = [value for value, _ in total.most_common(TOP_CATEGORIES)]
    figure = go.Figure()
    has_other = len(total) > len(shown)
    x = [*map(str, shown), *(["other"] if has_other else [])]
    for label, counts in series.items():
        other = sum(count for value, count in counts.items() if value not in shown)
        figure.add_trace(go.Bar(name=label, x=x, y=[counts.get(value, 0) for value in shown] + [other] * has_other))
    figure.update_layout(barmode="stack")
    return _styled(figure, title, x_title, "documents")


def cluster_sizes_figure(sizes: dict[str, Counter]) -> go.Figure:
    """How many duplicate clusters of each size every dedup stage found (log scale: a few are huge)."""
    figure = go.Figure()
    for stage, counts in sizes.items():
        points = sorted(counts.items())
        figure.add_trace(go.Bar(name=stage, x=[str(size) for size, _ in points], y=[n for _, n in points]))
    figure.update_layout(barmode="group")
    figure.update_xaxes(type="category")
    figure.update_yaxes(type="log")
    return _styled(figure, "Duplicate clusters by size", "documents in the cluster", "clusters")


def tokens_per_shard_figure(shards: dict[str, list[tuple[str, int]]]) -> go.Figure:
    figure = go.Figure([
        go.Bar(name=stage, x=[f"{stage}/{name}" for name, _ in points], y=[tokens for _, tokens in points])
        for stage, points in shards.items()
    ])
    return _styled(figure, "Tokens per shard", "shard", "tokens")


def training_figure(metrics: TrainingMetrics) -> go.Figure:
    """Loss and validation loss, learning rate, throughput and MFU against the step, one panel each."""
    panels = (("loss", ("loss", "val_loss")), ("learning rate", ("lr",)), ("tokens/s", ("tokens_per_s",)),
              ("MFU", ("mfu",)))
    figure = make_subplots(rows=2, cols=2, subplot_titles=[title for title, _ in panels], horizontal_spacing=0.1)
    for index, (_, names) in enumerate(panels):
        for name in names:
            steps, values = metrics.steps_and_values(name)
            if steps:
                mode = "lines+markers" if name == "val_loss" else "lines"
                figure.add_trace(go.Scatter(name=name, x=steps, y=values, mode=mode, showlegend=name.endswith("loss")),
                                 row=index // 2 + 1, col=index % 2 + 1)
    _styled(figure, f"Training run: {metrics.path.name}", height=640)
    return figure.update_xaxes(title_text="step", row=2)
