"""Runs a recipe: map stages fused per shard, global stages (dedup) over all shards, stats merged."""

import json
from pathlib import Path

from gristmill.pipeline.executors import Executor, make_executor
from gristmill.pipeline.log import get_logger
from gristmill.pipeline.plan import check_plan
from gristmill.pipeline.readers import InputConfig, expand_paths
from gristmill.pipeline.recipe import Recipe
from gristmill.pipeline.registry import resolve_stage
from gristmill.pipeline.shard_task import ShardTask, StageSpec, run_shard
from gristmill.pipeline.stage import GlobalStage
from gristmill.pipeline.stats import StageStats, merge_stage_stats

log = get_logger(__name__)


def run_recipe(recipe: Recipe) -> dict[str, StageStats]:
    """Runs every stage of `recipe`; returns merged stats per stage folder. Reruns skip finished shards."""
    files = expand_paths(recipe.input.paths)
    specs = recipe.stage_specs()
    out = Path(recipe.output.path)
    check_plan(out, files, specs)
    with make_executor(recipe.executor) as executor:
        _run_segments(recipe, files, specs, out, executor)
    stats = {}
    for folder in ["read", *(spec.name for spec in specs)]:
        path = out / folder / "stats.json"
        if path.is_file():
            stats[folder] = StageStats.from_dict(json.loads(path.read_text(encoding="utf-8")))
    return stats


def _run_segments(recipe: Recipe, files: list[str], specs: list[StageSpec], out: Path, executor: Executor) -> None:
    inputs, pending, first = files, [], True
    for spec in [*specs, None]:
        stage_class = resolve_stage(spec.type) if spec is not None else None
        if spec is not None and not issubclass(stage_class, GlobalStage):
            pending.append(spec)
            continue
        if pending or first:
            final = spec is None
            inputs = _run_map_segment(recipe, inputs, pending, out, executor, first, final)
            pending, first = [], False
        if spec is not None:
            stage = spec.build()
            log.info("stage %s: %d input shards", spec.name, len(inputs))
            inputs = [str(p) for p in stage.run([Path(p) for p in inputs], out / spec.name, executor,
                                                 recipe.output.keep_removed)]


def _run_map_segment(
    recipe: Recipe, inputs: list[str], specs: list[StageSpec], out: Path, executor: Executor, first: bool, final: bool
) -> list[str]:
    last_class = resolve_stage(specs[-1].type) if specs else None
    output_format = getattr(last_class, "output_format", None) or (recipe.output.format if final else "parquet")
    tasks = [
        ShardTask(
            shard=index,
            input_path=path,
            input=recipe.input if first else InputConfig(batch_size=recipe.input.batch_size),
            stages=tuple(specs),
            out_dir=str(out),
            output_format=output_format,
            keep_removed=recipe.output.keep_removed,
            read_stage="read" if first else None,
        )
        for index, path in enumerate(inputs)
    ]
    names = " → ".join(spec.name for spec in specs) or "read"
    results = executor.map(run_shard, tasks, description=names)
    skipped = sum(result.skipped for result in results)
    if skipped:
        log.info("%s: %d of %d shards were already complete and were skipped", names, skipped, len(results))
    written = [str(tasks[0].output_dir / r.output) for r in results if r.output is not None] if tasks else []
    for folder in (["read"] if first else []) + [spec.name for spec in specs]:
        merge_stage_stats(out / folder)
    for spec in specs:
        spec.build().finalize(out / spec.name, [Path(p) for p in written])
    return written
