"""Tokens/s of the whole tokenize stage (parquet -> encode -> token shards + manifest) against two peers on
the same documents and tokenizer: plain `tokenizers` encode_batch on texts already in memory (the ceiling;
target >= 0.9 of it) and datatrove's DocumentTokenizer reading the same parquet files (target >= 2x).
The stage encodes with tiktoken when it gives the same ids (`encoder = "auto"`), so tiktoken on texts in
memory and the stage forced onto `tokenizers` are measured too. Also reports bytes per token on disk.
Appends the table to bench/results/tokenize.md.

Usage: python -m bench.tokenize [--corpus data/sample] [--vocab-size 32768] [--repeat 3] [--copies 2]
       [--threads N] [--one-file-per-copy]
"""

import argparse
import itertools
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from bench.harness import git_revision, markdown_table, today
from gristmill.pipeline.readers import InputConfig, ReadErrors, expand_paths, read_documents
from gristmill.pipeline.run import run_recipe
from gristmill.pipeline.stats import StageStats
from gristmill.tokenizer.batch_encoder import jemalloc_loaded
from gristmill.tokenizer.loading import load_encoder
from gristmill.tokenizer.shard_format import TokenDataset
from gristmill.tokenizer.tokenize_stage import tokenize_recipe
from gristmill.tokenizer.train_bpe import BpeTrainingConfig, train_bpe

EOS = "<|endoftext|>"
ENCODE_BATCH = "tokenizers encode_batch, texts in memory"
ENCODE_BATCH_FAST = "tokenizers encode_batch_fast, texts in memory"
TIKTOKEN = "tiktoken (the stage's encoder), texts in memory"
OURS = "gristmill tokenize (parquet -> shards)"
OURS_TOKENIZERS = "gristmill tokenize, encoder tokenizers"
DATATROVE = "datatrove DocumentTokenizer (parquet -> .ds)"
RESULTS = Path(__file__).parent / "results" / "tokenize.md"


def write_parquet_inputs(corpus: str, directory: Path, copies: int, *, one_file_per_copy: bool) -> list[list[str]]:
    """The corpus as parquet document shards, repeated `copies` times with new ids: one shard per input file,
    or per copy. Returns the non-empty texts of each record batch the stage will read, in order."""
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    errors = ReadErrors(StageStats(stage="read"), None)
    tables = [pa.Table.from_batches(list(read_documents(path, InputConfig(), errors))).select(["id", "text"])
              for path in expand_paths([corpus])]
    if one_file_per_copy:
        tables = [pa.concat_tables(tables)]
    for copy in range(copies):
        for index, table in enumerate(tables):
            ids = pa.array([f"{copy}:{i}" for i in table.column("id").to_pylist()])
            pq.write_table(table.set_column(0, "id", ids), directory / f"part-{copy:02d}{index:03d}.parquet")
    batch_size = InputConfig().batch_size
    per_file = [[t for t in table.column("text").to_pylist()[start : start + batch_size] if t]
                for table in tables for start in range(0, table.num_rows, batch_size)]
    return per_file * copies


Prepare = Callable[[], Callable[[], object]]
"""Sets a method up (untimed) and returns the call to time. Every method starts from a freshly loaded
tokenizer, so none profits from a BPE word cache another run warmed."""


def in_memory(tokenizer_file: Path, texts: list[str], *, fast: bool = False) -> Prepare:
    """Encodes texts already in memory in one `tokenizers` call: the ceiling the issue names."""

    def prepare() -> Callable[[], object]:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_file))
        tokenizer.encode_special_tokens = True  # as the stage encodes (special-token text is plain text)
        encode = tokenizer.encode_batch_fast if fast else tokenizer.encode_batch
        return lambda: encode(texts, add_special_tokens=False)

    return prepare


def tiktoken_in_memory(tokenizer_file: Path, texts: list[str]) -> Prepare:
    """The stage's tiktoken encoder (verified equal to `tokenizers` when loaded) on texts in memory."""

    def prepare() -> Callable[[], object]:
        encode, _ = load_encoder(str(tokenizer_file), "tiktoken")
        return lambda: encode(texts)

    return prepare


def gristmill_stage(inputs: Path, out: Path, tokenizer: Path, **options: object) -> Prepare:
    runs = itertools.count()

    def prepare() -> Callable[[], object]:
        shutil.rmtree(out, ignore_errors=True)
        # A fresh copy of the file per run misses the stage's per-process tokenizer cache, as a new run would.
        copy = out.with_name(f"{out.name}-tokenizer-{next(runs)}.json")
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tokenizer, copy)
        recipe = tokenize_recipe([str(inputs)], out, keep_removed=False, tokenizer=str(copy), eos_token=EOS,
                                 **options)
        return lambda: run_recipe(recipe)

    return prepare


def datatrove_tokenizer(inputs: Path, out: Path, tokenizer: Path, *, shuffle: bool) -> Prepare:
    def prepare() -> Callable[[], object]:
        from datatrove.executor import LocalPipelineExecutor
        from datatrove.pipeline.readers import ParquetReader
        from datatrove.pipeline.tokens import DocumentTokenizer

        shutil.rmtree(out, ignore_errors=True)
        pipeline = [
            ParquetReader(str(inputs)),
            DocumentTokenizer(str(out / "tokens"), tokenizer_name_or_path=str(tokenizer), eos_token=EOS,
                              shuffle_documents=shuffle, seed=0),
        ]
        return LocalPipelineExecutor(pipeline, tasks=1, workers=1, logging_dir=str(out / "logs")).run

    return prepare


def interleaved_runs(methods: dict[str, Prepare], repeat: int) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of each run, the methods taking turns so load from other users of the machine hits
    all alike. CPU seconds count every thread of this process."""
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}
    for _ in range(repeat):
        for name, prepare in methods.items():
            call = prepare()
            wall, cpu = time.perf_counter(), time.process_time()
            call()
            samples[name].append((time.perf_counter() - wall, time.process_time() - cpu))
    return samples


def bytes_per_token(out: Path) -> float:
    """Shard bytes per token of the dataset a `gristmill_stage` run left in `out`."""
    dataset = TokenDataset(out / "tokenize" / "dataset")
    return sum(s.bytes for s in dataset.manifest.shards) / dataset.num_tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default="data/sample")
    parser.add_argument("--vocab-size", type=int, default=32768)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2, help="Copies of the corpus (new ids) to tokenize.")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gristmill-bench-tokenize"))
    parser.add_argument("--threads", type=int, default=None,
                        help="Encoder threads (RAYON_NUM_THREADS); 1 measures work per token apart from parallelism.")
    parser.add_argument("--one-file-per-copy", action="store_true",
                        help="Write each copy of the corpus as one parquet file (fewer, larger input shards).")
    args = parser.parse_args()
    if args.threads is not None:
        os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    from tokenizers import Tokenizer

    batches = write_parquet_inputs(args.corpus, args.work / "input", args.copies,
                                   one_file_per_copy=args.one_file_per_copy)
    texts = list(itertools.chain.from_iterable(batches))
    tokenizer_file = args.work / f"tokenizer-{args.vocab_size}.json"
    if not tokenizer_file.is_file():
        train_bpe([str(args.work / "input")], tokenizer_file, BpeTrainingConfig(vocab_size=args.vocab_size))
    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    tokenizer.encode_special_tokens = True
    tokens = sum(len(e.ids) for e in tokenizer.encode_batch_fast(texts, add_special_tokens=False)) + len(texts)
    inputs, out = args.work / "input", args.work / "out"
    methods = {
        ENCODE_BATCH: in_memory(tokenizer_file, texts),
        ENCODE_BATCH_FAST: in_memory(tokenizer_file, texts, fast=True),
        TIKTOKEN: tiktoken_in_memory(tokenizer_file, texts),
        OURS: gristmill_stage(inputs, out / "gristmill", tokenizer_file),
        OURS_TOKENIZERS: gristmill_stage(inputs, out / "tokenizers", tokenizer_file, encoder="tokenizers"),
        "gristmill tokenize, shuffled": gristmill_stage(inputs, out / "shuffled", tokenizer_file, shuffle=True),
        DATATROVE: datatrove_tokenizer(inputs, out / "datatrove", tokenizer_file, shuffle=False),
        "datatrove DocumentTokenizer, shuffled (its default)": datatrove_tokenizer(
            inputs, out / "datatrove-shuffled", tokenizer_file, shuffle=True),
    }
    samples = interleaved_runs(methods, args.repeat)
    # Ratios use medians; the fastest run (least disturbed by the machine's other users) shows the spread.
    median = {name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
              for name, runs in samples.items()}
    best = {name: min(w for w, _ in runs) for name, runs in samples.items()}
    wall, cpu = median[OURS]
    rows = [[name, w, c, tokens / w / 1e6, wall / w, cpu / c, best[name]] for name, (w, c) in median.items()]
    gristmill_stage(inputs, out / "lz4", tokenizer_file, compression="lz4")()()
    datatrove_bytes = sum(p.stat().st_size for p in (out / "datatrove" / "tokens").glob("*.ds"))
    sizes = [
        ["gristmill shards, uncompressed", bytes_per_token(out / "gristmill")],
        ["gristmill shards, LZ4", bytes_per_token(out / "lz4")],
        ["datatrove .ds (tokens only, no ids)", datatrove_bytes / tokens],
    ]
    text_mb = sum(len(t.encode("utf-8")) for t in texts) / 2**20
    allocator = ("jemalloc (LD_PRELOAD), so the tokenizers encoder calls encode_batch_fast" if jemalloc_loaded()
                 else "glibc malloc, so the tokenizers encoder calls encode_batch")
    report = "\n".join([
        f"## {today()} tokenize throughput",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared), "
        f"encoder threads: {os.environ.get('RAYON_NUM_THREADS', 'all')}, "
        f"Python {platform.python_version()}; git {git_revision()}; allocator: {allocator}.",
        f"Command: `python -m bench.tokenize {' '.join(sys.argv[1:])}`",
        f"Input: {args.corpus} x{args.copies} = {len(texts)} non-empty documents in {len(batches)} record batches "
        f"from {len(list((args.work / 'input').glob('*.parquet')))} parquet files, {text_mb:.1f} MiB of text, "
        f"{tokens:,} tokens (EOS included) with a {tokenizer.get_vocab_size()}-token byte-level BPE. "
        f"{args.repeat} interleaved runs each; medians, and the fastest run's wall time.",
        "",
        markdown_table(["method", "median wall s", "median CPU s", "Mtok/s (wall)", "speed / ours (wall)",
                        "speed / ours (CPU)", "best wall s"], rows),
        "",
        "Ours as a share of each in-memory ceiling, median wall (median CPU): "
        + "; ".join(f"{name}: {median[name][0] / wall:.2f} ({median[name][1] / cpu:.2f})"
                    for name in (ENCODE_BATCH, ENCODE_BATCH_FAST, TIKTOKEN))
        + f". Ours vs datatrove: {median[DATATROVE][0] / wall:.2f}x ({median[DATATROVE][1] / cpu:.2f}x) faster; "
        f"ours with encoder tokenizers vs datatrove: {median[DATATROVE][0] / median[OURS_TOKENIZERS][0]:.2f}x "
        f"({median[DATATROVE][1] / median[OURS_TOKENIZERS][1]:.2f}x).",
        "",
        markdown_table(["on disk", "bytes/token"], sizes),
        "",
    ])
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a", encoding="utf-8") as results:
        results.write(report + "\n")


if __name__ == "__main__":
    main()
