"""MinHash dedup benchmark (issue 3): quality on planted near-duplicates, speed and peak memory against
datatrove's MinHash pipeline on the same input in the same run, and Ray scaling over 1 and 2 workers.

Quality: precision of removal decisions and recall of true duplicate pairs (also of all pairs inside
output clusters) against the exact truth of `bench/dedup_corpus.py`, at Jaccard >= 0.8 and >= 0.7,
with and without verification.
Speed: each pipeline runs in a fresh child process on one core (local executor, 1 worker; datatrove's
LocalPipelineExecutor, 1 worker), from JSONL in to kept documents out; documents per CPU-second
(per core), wall time and the child's peak RSS. Scale: peak memory on larger corpora, and the same dedup on a local Ray with 1
and 2 worker CPUs.

Usage: python -m bench.dedup [--docs 8000] [--scale-docs 25000 100000] [--work /tmp/gristmill_dedup_bench]
       [--out bench/results/dedup.md]
"""

import argparse
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

from bench.dedup_corpus import generate, scaled
from bench.harness import git_revision, markdown_table, today
from gristmill.pipeline.dedup.minhash.config import MinHashConfig
from gristmill.pipeline.dedup.minhash.stage import MinHashDedup
from gristmill.pipeline.executors import ExecutorConfig, make_executor

THRESHOLDS = (0.8, 0.7)
QUALITY_CONFIGS = {
    "LSH only": MinHashConfig(),
    "verify, Jaccard >= 0.8": MinHashConfig(verify=True, jaccard_threshold=0.8),
    "verify, Jaccard >= 0.7": MinHashConfig(verify=True, jaccard_threshold=0.7),
}


def run_ours(source: Path, work: Path, config: MinHashConfig, executor: ExecutorConfig, name: str) -> float:
    """Seconds of one whole MinHash dedup (all four phases) of the JSONL shards in `source`, into a fresh folder."""
    stage_dir = work / "runs" / name
    shutil.rmtree(stage_dir, ignore_errors=True)
    with make_executor(executor) as pool:
        started = time.perf_counter()
        MinHashDedup(config).run(sorted(source.glob("part-*.jsonl")), stage_dir, pool, keep_removed=True)
        return time.perf_counter() - started


def run_datatrove(source: Path, work: Path) -> float:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter

    root = work / "runs" / "datatrove"
    shutil.rmtree(root, ignore_errors=True)
    config = MinhashConfig(n_grams=5, num_buckets=14, hashes_per_bucket=8)
    source = str(source)

    def execute(name: str, pipeline: list, tasks: int) -> None:
        LocalPipelineExecutor(pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(root / "logs" / name)).run()

    started = time.perf_counter()
    execute("signatures", [JsonlReader(source), MinhashDedupSignature(output_folder=str(root / "sigs"), config=config)], 1)
    execute("buckets", [MinhashDedupBuckets(input_folder=str(root / "sigs"), output_folder=str(root / "buckets"), config=config)], config.num_buckets)
    execute("cluster", [MinhashDedupCluster(input_folder=str(root / "buckets"), output_folder=str(root / "remove"), config=config)], 1)
    execute(
        "filter",
        [
            JsonlReader(source),
            MinhashDedupFilter(input_folder=str(root / "remove"), exclusion_writer=JsonlWriter(str(root / "removed"))),
            JsonlWriter(str(root / "kept")),
        ],
        1,
    )
    return time.perf_counter() - started


def peak_memory_mb() -> float:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss, not inherited from the forking parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(kind: str, source: Path, work: Path) -> None:
    """Runs one timed pipeline in this (fresh) process; prints its wall and CPU seconds and peak memory.

    CPU seconds count this process only, which is the whole pipeline for the one-worker runs (both
    executors then work in-process) and the driver alone on Ray.
    """
    cpu_started = time.process_time()
    if kind == "datatrove":
        seconds = run_datatrove(source, work)
    elif kind.startswith("ray"):
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        seconds = run_ours(source, work, MinHashConfig(), ExecutorConfig(kind="ray", workers=int(kind[3:])), kind)
    else:
        seconds = run_ours(source, work, MinHashConfig(verify=kind == "verify"), ExecutorConfig(), kind)
    print(json.dumps({"seconds": seconds, "cpu_s": time.process_time() - cpu_started, "peak_mb": peak_memory_mb()}))


def measure(kind: str, source: Path, work: Path) -> dict:
    """Runs `child(kind)` in a fresh process and returns what it printed."""
    log = work / f"{kind}.log"
    with open(log, "w") as handle:
        finished = subprocess.run(
            [sys.executable, "-m", "bench.dedup", "--child", kind, "--source", str(source), "--work", str(work)],
            stdout=subprocess.PIPE, stderr=handle, text=True, check=False,
        )
    if finished.returncode != 0:
        raise RuntimeError(f"{kind} failed (exit status {finished.returncode}); see {log}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def read_clusters(stage_dir: Path) -> tuple[dict[str, str], list[list[str]]]:
    """(removed id -> kept id of its cluster, members of every cluster) from `clusters/`."""
    members: dict[int, list[str]] = {}
    keeper: dict[int, str] = {}
    for path in sorted((stage_dir / "clusters").glob("part-*.parquet")):
        for row in pq.read_table(path).to_pylist():
            members.setdefault(row["cluster"], []).append(row["id"])
            if row["kept"]:
                keeper[row["cluster"]] = row["id"]
    removed = {doc: keeper[cluster] for cluster, ids in members.items() for doc in ids if doc != keeper[cluster]}
    return removed, list(members.values())


def pair_key(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a < b else (b, a)


def score(truth: dict[tuple[str, str], float], removed: dict[str, str], clusters: list[list[str]], threshold: float) -> list[float]:
    """[decision precision, collapse recall, cluster-pair precision, cluster-pair recall] at `threshold`.

    A decision is a removed document and the kept one it was removed for; it is right when their
    Jaccard reaches the threshold. A true pair is collapsed when at least one of its two documents
    was removed. Cluster pairs are all pairs of documents in one cluster.
    """
    expected = {pair for pair, similarity in truth.items() if similarity >= threshold}
    right = sum(truth.get(pair_key(doc, kept), 0.0) >= threshold for doc, kept in removed.items())
    collapsed = sum(a in removed or b in removed for a, b in expected)
    predicted = {pair_key(a, b) for ids in clusters for a, b in itertools.combinations(ids, 2)}
    hits = len(predicted & expected)
    return [right / max(len(removed), 1), collapsed / max(len(expected), 1),
            hits / max(len(predicted), 1), hits / max(len(expected), 1)]


def single_link_precision(truth: dict[tuple[str, str], float], threshold: float) -> float:
    """Cluster-pair precision of components that link exactly the true pairs (what transitivity costs)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    expected = [pair for pair, similarity in truth.items() if similarity >= threshold]
    for a, b in expected:
        parent[find(a)] = find(b)
    groups: dict[str, list[str]] = {}
    for node in list(parent):
        groups.setdefault(find(node), []).append(node)
    predicted = {pair_key(a, b) for ids in groups.values() for a, b in itertools.combinations(ids, 2)}
    return len(predicted & set(expected)) / max(len(predicted), 1)


def quality(work: Path) -> tuple[list[list[object]], list[list[object]]]:
    truth = {
        pair_key(row["a"], row["b"]): row["jaccard"]
        for row in map(json.loads, (work / "corpus" / "truth.jsonl").read_text().splitlines())
    }
    planted = [json.loads(line) for line in (work / "corpus" / "planted.jsonl").read_text().splitlines()]
    rows, by_bin = [], []
    for name, config in QUALITY_CONFIGS.items():
        run_ours(work / "corpus" / "docs", work, config, ExecutorConfig(), "quality")
        removed, clusters = read_clusters(work / "runs" / "quality")
        for threshold in THRESHOLDS:
            rows.append([name, f">= {threshold}", len(removed), *score(truth, removed, clusters, threshold)])
        if name == "LSH only":
            predicted = {pair_key(a, b) for ids in clusters for a, b in itertools.combinations(ids, 2)}
            for low in (0.5, 0.6, 0.7, 0.8, 0.9):
                pairs = [p for p in planted if low <= p["jaccard"] < low + 0.1 or (low == 0.9 and p["jaccard"] == 1.0)]
                found = sum(pair_key(p["a"], p["b"]) in predicted for p in pairs)
                middle = low + 0.05
                by_bin.append([f"{low:.1f}-{low + 0.1:.1f}", len(pairs), found / max(len(pairs), 1), 1 - (1 - middle**8) ** 14])
    for threshold in THRESHOLDS:
        rows.append(["exact single-link clustering", f">= {threshold}", "", "", "", single_link_precision(truth, threshold), ""])
    return rows, by_bin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=8000, help="quality corpus size (the sample yields ~5,500)")
    parser.add_argument("--scale-docs", type=int, nargs="*", default=[25_000, 100_000],
                        help="sizes of the larger, mutated corpora for memory growth; Ray runs on the last")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gristmill_dedup_bench"))
    parser.add_argument("--out", type=Path, default=Path("bench/results/dedup.md"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.source, args.work)
        return
    started = time.perf_counter()
    corpus = args.work / "corpus"
    summary_path = corpus / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else None
    if summary is None or summary.get("requested") != args.docs:
        summary = generate(corpus, args.docs, seed=0) | {"requested": args.docs}
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"corpus: {summary}")
    quality_rows, bin_rows = quality(args.work)
    speed = {kind: measure(kind, corpus / "docs", args.work) for kind in ("ours", "verify", "datatrove")}
    ratio = speed["datatrove"]["cpu_s"] / speed["ours"]["cpu_s"]
    print(f"gristmill / datatrove docs per CPU-second: {ratio:.2f}x; wall: {speed['datatrove']['seconds'] / speed['ours']['seconds']:.2f}x")
    scale = {}
    for documents in args.scale_docs:
        source = args.work / f"scaled-{documents}"
        if not source.is_dir():
            scaled(corpus / "docs", source, documents, seed=documents)
        kinds = ("ours", "ray1", "ray2") if documents == args.scale_docs[-1] else ("ours",)
        scale[documents] = {kind: measure(kind, source, args.work) for kind in kinds}
        print(f"{documents} documents: {scale[documents]}")
    report(args, summary, quality_rows, bin_rows, speed, ratio, scale, time.perf_counter() - started)


def report(args: argparse.Namespace, summary: dict, quality_rows: list, bin_rows: list, speed: dict,
           ratio: float, scale: dict, total_s: float) -> None:
    documents = summary["documents"]
    names = {"ours": "gristmill, 1 core", "verify": "gristmill + verify, 1 core", "datatrove": "datatrove 0.10, 1 core",
             "ray1": "gristmill on Ray, 1 worker", "ray2": "gristmill on Ray, 2 workers"}
    speed_rows = [
        [names[k], f"{v['seconds']:.2f}", f"{v['cpu_s']:.2f}", f"{documents / v['cpu_s']:,.0f}", f"{v['peak_mb']:.0f}"]
        for k, v in speed.items()
    ]
    wall_ratio = speed["datatrove"]["seconds"] / speed["ours"]["seconds"]
    scale_rows = [
        [f"{size:,}", names[kind], f"{result['seconds']:.1f}", f"{size / result['seconds']:,.0f}",
         f"{size / result['cpu_s']:,.0f}" if kind == "ours" else "", f"{result['peak_mb']:.0f}"]
        for size, runs in scale.items() for kind, result in runs.items()
    ]
    largest = scale[args.scale_docs[-1]] if scale else {}
    scaling = f"{largest['ray1']['seconds'] / largest['ray2']['seconds']:.2f}x" if "ray2" in largest else "not run"
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), platform.processor())
    command = f"python -m bench.dedup --docs {args.docs} --scale-docs {' '.join(map(str, args.scale_docs))}"
    text = f"""# MinHash dedup benchmark

{today()}, commit {git_revision()}, {cpu}, {os.cpu_count()} cores shared with other work (timings are noisy),
Python {platform.python_version()}. Command: `{command}` ({total_s:.0f} s in all).

Corpus (`bench/dedup_corpus.py`, seed 0): {documents} documents, paragraph chunks of the real text in
data/sample plus {summary['planted_pairs']} planted near-duplicates at Jaccard targets drawn from [0.5, 1.0];
the exact truth holds {summary['truth_pairs']} pairs with Jaccard >= 0.5 (planted and natural ones).
Settings: 5-word shingles, 14 bands x 8 rows (112 permutations), on both sides.

## Quality

A *decision* is a removed document with the kept document it was removed for: precision is the
share of decisions whose pair has true Jaccard >= the threshold. Recall is the share of true pairs
(Jaccard >= threshold) of which at least one document was removed. *Cluster pairs* are all pairs
inside one output cluster: transitivity caps their precision for any clustering into connected
components, as the row of an exact single-link clustering of the true pairs shows.

{markdown_table(["config", "truth at", "removed", "decision precision", "recall", "cluster-pair precision", "cluster-pair recall"], quality_rows)}

Recall of the planted pairs by their Jaccard (LSH only), against the LSH curve 1 - (1 - s^8)^14 at the bin middle:

{markdown_table(["Jaccard", "planted pairs", "found", "LSH curve"], bin_rows)}

## Speed and memory (whole dedup: signatures, buckets, clusters, filter; JSONL in, documents out)

Each row is a fresh child process doing all the work in-process on one thread of work; "docs per
CPU-second" is documents over the process's CPU time, the per-core rate, which other jobs on the
shared cores do not distort the way they distort wall time. Peak RSS is the process's VmHWM.

{markdown_table(["pipeline", "wall s", "CPU s", "docs per CPU-second", "peak RSS MB"], speed_rows)}

gristmill / datatrove, docs per CPU-second (per core): **{ratio:.1f}x** (wall time: {wall_ratio:.1f}x).

## Scale: larger corpora (benchmark documents with 30% of words replaced; 1 in 20 copied verbatim)

{markdown_table(["documents", "pipeline", "wall s", "docs/s (wall)", "docs per CPU-second", "peak RSS MB"], scale_rows)}

Ray, 2 workers vs 1 on the largest corpus: **{scaling}** (Ray's start excluded; peak RSS is the
driver's only, the workers are separate processes).
"""
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
