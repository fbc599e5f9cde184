"""Heuristic filter chain, gristmill vs datatrove, on the same documents in one run (issue 4).

Prints docs/s per core of the chain Gopher quality → Gopher repetition → C4 → FineWeb for both
(one process, one core each), then each filter's decision agreement on every document of the input
(each filter judging all documents), and lists every document where the decisions differ.

Usage: python -m bench.filters [--input 'data/sample/*'] [--repeat 3] [--out bench/results/filters.md]
"""

import argparse
import collections
import json
import os
import platform
import time
from pathlib import Path

import pyarrow as pa
from gristmill.filters.c4 import C4Quality
from gristmill.filters.fineweb import FineWebQuality
from gristmill.filters.gopher_quality import GopherQuality
from gristmill.filters.gopher_repetition import GopherRepetition
from gristmill.pipeline.readers import (
    InputConfig,
    ReadErrors,
    expand_paths,
    read_documents,
)
from gristmill.pipeline.stage import ShardContext, Stage
from gristmill.pipeline.stats import StageStats

BATCH_SIZE = 2048
WHY_DECISIONS_DIFFER = """\
All rule order, thresholds and arithmetic follow datatrove; the documents below differ only through
how text is cut into words and sentences. datatrove runs spaCy's English tokenizer and sentencizer;
gristmill cuts words with vectorized rules of the same shape (filters/text_stats.py) and counts
sentences by rule (filters/c4.py), which is what makes it fast. What spaCy does that the rules do not:
- special cases kept as one word: abbreviations ("e.g.", "Inc.", "vs.", "C."), "and/or", emoticons
  ("):", ":]"), "''";
- URLs and e-mail addresses kept whole ("http://www.apache.org/licenses/LICENSE-2.0");
- sentence ends after multi-letter abbreviations, inside code ("_pickle.Unpickler.dump()") and in
  right-to-left scripts.
Such documents are code, man pages and licence texts close to a threshold (mostly Gopher's 80%
alphabetic-words rule, which counts every punctuation word); every one is listed here.
"""


class RemovedRows:
    """Stands in for a `removed/` side output and remembers each removed document's reason."""

    def __init__(self) -> None:
        self.reasons: dict[str, str] = {}

    def write(self, batch: pa.RecordBatch) -> None:
        self.reasons.update(zip(batch.column("id").to_pylist(), batch.column("reason").to_pylist()))


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else platform.machine()
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def load(patterns: list[str]) -> list[pa.RecordBatch]:
    batches = []
    for path in expand_paths(patterns):
        batches += read_documents(path, InputConfig(batch_size=BATCH_SIZE), ReadErrors(StageStats("read"), None))
    return batches


def ours_chain() -> list[Stage]:
    return [GopherQuality(), GopherRepetition(), C4Quality(), FineWebQuality()]


def datatrove_chain() -> list:
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )

    return [GopherQualityFilter(), GopherRepetitionFilter(), C4QualityFilter(), FineWebQualityFilter()]


def run_ours(stages: list[Stage], batches: list[pa.RecordBatch]) -> tuple[int, dict[str, str]]:
    """Runs the chain; returns documents kept and each removed document's `<stage>:<reason>`."""
    removed, kept = {}, 0
    for batch in batches:
        for stage in stages:
            sink = RemovedRows()
            batch = stage.process(batch, ShardContext(0, Path("."), StageStats(stage.name), sink))
            removed.update({doc: f"{stage.name}:{reason}" for doc, reason in sink.reasons.items()})
        kept += batch.num_rows
    return kept, removed


def run_datatrove(filters: list, documents: list) -> tuple[int, dict[str, str]]:
    removed, kept = {}, 0
    for doc in documents:
        for step in filters:
            result = step.filter(doc)
            if result is not True:
                removed[doc.id] = f"{step.name}:{result[1] if isinstance(result, tuple) else ''}"
                break
        else:
            kept += 1
    return kept, removed


def datatrove_documents(batches: list[pa.RecordBatch]) -> list:
    from datatrove.data import Document

    return [Document(text=row["text"], id=row["id"]) for batch in batches for row in batch.to_pylist()]


def best_seconds(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", nargs="+", default=["data/sample/*"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    batches = load(args.input)
    n_docs = sum(b.num_rows for b in batches)
    ours, theirs = ours_chain(), datatrove_chain()
    run_datatrove(theirs, datatrove_documents(batches[:1])[:50])  # load spaCy outside the timing

    ours_s = best_seconds(lambda: run_ours(ours, batches), args.repeat)
    theirs_s = best_seconds(lambda: run_datatrove(theirs, datatrove_documents(batches)), args.repeat)
    lines = [
        f"## Heuristic filter chain ({time.strftime('%Y-%m-%d')}, {machine()}, 1 process)",
        f"command: `python -m bench.filters --input {' '.join(args.input)} --repeat {args.repeat}`",
        "",
        f"{n_docs} documents; chain gopher_quality → gopher_repetition → c4_quality → fineweb_quality",
        "",
        "| implementation | seconds | docs/s per core |",
        "|---|---|---|",
        f"| gristmill | {ours_s:.3f} | {n_docs / ours_s:,.0f} |",
        f"| datatrove | {theirs_s:.3f} | {n_docs / theirs_s:,.0f} |",
        f"| ratio | | **{theirs_s / ours_s:.1f}x** |",
        "",
        "## Decision agreement (each filter alone on every document)",
        "",
        "| filter | agree | documents | removed (ours / datatrove) |",
        "|---|---|---|---|",
    ]
    differences = []
    for stage, step in zip(ours, theirs):
        _, our_removed = run_ours([stage], batches)
        _, their_removed = run_datatrove([step], datatrove_documents(batches))
        differ = sorted(set(our_removed) ^ set(their_removed))
        lines.append(
            f"| {stage.name} | {n_docs - len(differ)} ({100 * (n_docs - len(differ)) / n_docs:.2f}%) | {n_docs} "
            f"| {len(our_removed)} / {len(their_removed)} |"
        )
        differences += [(stage.name, doc, our_removed.get(doc, "kept"), their_removed.get(doc, "kept")) for doc in differ]
    lines += ["", "## Documents decided differently", "", WHY_DECISIONS_DIFFER]
    lines += ["| filter | document | gristmill | datatrove |", "|---|---|---|---|"]
    lines += [f"| {name} | {doc} | {ours_r} | {theirs_r} |" for name, doc, ours_r, theirs_r in differences]
    report = "\n".join(lines) + "\n"
    print(report)
    print(json.dumps(collections.Counter(name for name, *_ in differences)))
    if args.out:
        args.out.write_text(report, encoding="utf-8")


if __name__ == "__main__":
    main()
