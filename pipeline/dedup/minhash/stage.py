"""The MinHash-LSH dedup stage: four phases through the executor, each resumable task by task.

1. signatures (one task per shard): band keys of every document, shuffled into `partitions` files;
2. pairs (one task per partition): candidate edges from shared band keys, optionally verified;
3. clusters (one task): connected components, split by verification if on, one kept document
   per cluster, removal lists per shard;
4. filter (one task per shard): kept documents, `removed/`, `clusters/`, stats.

Work files live under `<stage>/work/` and stay for inspection and resume; `cluster_stats.json`
sums up clusters, their sizes and the pairs found.
"""

from pathlib import Path

from gristmill.pipeline.dedup.minhash.clusters import ClusterTask, cluster_pairs
from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.pairs import PairTask, find_pairs
from gristmill.pipeline.dedup.minhash.signatures import SignatureTask, write_band_keys
from gristmill.pipeline.dedup.phase import check_plan
from gristmill.pipeline.dedup.removal import apply_removals_to_shards
from gristmill.pipeline.dedup.shard_io import no_documents
from gristmill.pipeline.executors import Executor
from gristmill.pipeline.stage import GlobalStage
from gristmill.pipeline.stats import write_json_atomic


class MinHashDedup(GlobalStage):
    name = "minhash_dedup"
    Config = MinHashConfig
    reason = "minhash_duplicate"

    def run(self, inputs: list[Path], stage_dir: Path, executor: Executor, keep_removed: bool) -> list[Path]:
        config: MinHashConfig = self.config
        if not inputs:
            return no_documents(stage_dir)
        check_plan(stage_dir, inputs, config)
        work = stage_dir / "work"
        buckets_dir, edges_dir, removals_dir = work / "buckets", work / "edges", work / "removals"
        executor.map(
            write_band_keys,
            [SignatureTask(config, shard, str(path), str(buckets_dir)) for shard, path in enumerate(inputs)],
            description=f"{stage_dir.name}: signatures",
        )
        executor.map(
            find_pairs,
            [PairTask(config, p, str(buckets_dir), str(edges_dir), len(inputs)) for p in range(config.partitions)],
            description=f"{stage_dir.name}: pairs",
        )
        (clusters,) = executor.map(
            cluster_pairs,
            [ClusterTask(config, str(buckets_dir), str(edges_dir), str(removals_dir), len(inputs))],
            description=f"{stage_dir.name}: clusters",
        )
        summary = {key: value for key, value in clusters.items() if key not in ("files", "skipped")}
        write_json_atomic(stage_dir / "cluster_stats.json", summary)
        return apply_removals_to_shards(
            executor, inputs, stage_dir, removals_dir, 1, self.reason, config.batch_size, keep_removed
        )
