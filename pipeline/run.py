"""Runs a recipe: map stages fused per shard, global stages (dedup) over all shards, stats merged."""

from pathlib import Path

from gristmill.pipeline.executors import Executor, make_executor
from gristmill.pipeline.log import get_logger
from gristmill.pipeline.plan import check_plan
from gristmill.pipeline.readers import InputConfig, expand_paths
from gristmill.pipeline.recipe import Recipe
from gristmill.pipeline.registry import resolve_stage
from gristmill.pipeline.shard_task import ShardTask, StageSpec, run_shard
from gristmill.pipeline.stage import GlobalStage
from gristmill.pipeline.stats import StageStats, merge_stage_stats, read_stage_stats

log = get_logger(__name__)


def run_recipe(recipe: Recipe) -> dict[str, StageStats]:
    """Runs every stage of `recipe`; returns merged stats per stage folder. Reruns skip finished shards."""
    files = expand_paths(recipe.input.paths)
    specs = recipe.stage_specs()
    out = Path(recipe.output.path)
    check_plan(out, files, specs)
    segments = _segments(specs)
    inputs = files
    with make_executor(recipe.executor) as executor:
        for index, segment in enumerate(segments):
            if isinstance(segment, list):
                first, final = index == 0, index == len(segments) - 1
                inputs = _run_map_segment(recipe, inputs, segment, out, executor, first, final)
            else:
                log.info("stage %s: %d input shards", segment.name, len(inputs))
                kept = segment.build().run([Path(p) for p in inputs], out / segment.name, executor,
                                           recipe.output.keep_removed)
                inputs = [str(path) for path in kept]
    folders = ["read", *(spec.name for spec in specs)]
    stats = {name: merged for name in folders if (merged := read_stage_stats(out / name)) is not None}
    read = stats.get("read")
    if read is not None and read.docs_out == 0 and read.docs_errors:
        kind, count = read.errors.most_common(1)[0]
        log.warning("no document could be read: %d unreadable records (most: %s, %d); check input.text_field "
                    "and the files, the records are in %s", read.docs_errors, kind, count, out / "read" / "errors")
    return stats


def _segments(specs: list[StageSpec]) -> list[list[StageSpec] | StageSpec]:
    """Consecutive map stages grouped (they run fused, shard by shard); each global stage alone. The first
    segment is always a map segment, so the reader runs (and materializes documents) even before a dedup."""
    segments: list[list[StageSpec] | StageSpec] = [[]]
    for spec in specs:
        if issubclass(resolve_stage(spec.type), GlobalStage):
            segments.append(spec)
        elif isinstance(segments[-1], list):
            segments[-1].append(spec)
        else:
            segments.append([spec])
    return segments


def _run_map_segment(
    recipe: Recipe, inputs: list[str], specs: list[StageSpec], out: Path, executor: Executor, first: bool, final: bool
) -> list[str]:
    stages = [spec.build() for spec in specs]  # on the driver: for is_finalized and finalize
    if stages and stages[-1].is_finalized(out / specs[-1].name):
        log.info("%s: finalized by an earlier run (%s); skipped", specs[-1].name, out / specs[-1].name)
        return []
    last_format = stages[-1].output_format if stages else None
    output_format = last_format or (recipe.output.format if final else "parquet")
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
    for spec, stage in zip(specs, stages):
        stage.finalize(out / spec.name, [Path(p) for p in written])
    return written
