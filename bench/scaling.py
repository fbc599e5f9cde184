"""Multi-GPU scaling: tokens/s and MFU of one model at 1, 2, 4, ... GPUs of one host, and the scaling
efficiency against the 1-GPU run of the same call.

Each GPU count is its own `torchrun --standalone` launch of this module's `worker` command, training on the
same synthetic corpus (seq_len 4096, best-fit packed, real loader) with a fixed micro-batch per GPU, so the
global batch grows with the GPU count (weak scaling). Every rank times the same steps as
`bench.trainer_throughput` does and writes its numbers; the driver adds the ranks' real tokens/s, averages
their MFU and reports efficiency = tokens/s at N GPUs / (N x tokens/s at 1 GPU). A launch that fails (out of
memory, a hang past --run-timeout) is reported as failed and the others still run.

Run on a host with several GPUs from the repository root, one model per call (each call takes minutes):
    source bench/gpu_env.sh && python -m bench.scaling --model transformer_350m --out $OUT/scaling.md
    source bench/gpu_env.sh && python -m bench.scaling --model hybrid_1b --out $OUT/scaling.md
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from bench.harness import git_revision, machine, markdown_table, print_and_append, today
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.models import presets as model_presets
from gristmill.trainer.presets import hybrid_1b_4k

MODELS = ("transformer_350m", "transformer_1b", "hybrid_1b")


def bench_config(
    model: str, corpus: Path, out_dir: Path, rows: int, parallelism: str, keep_params: bool
) -> TrainConfig:
    """The 1B recipe (seq_len 4096, best-fit packing, 2 loader workers) with the chosen model."""
    cfg = hybrid_1b_4k()
    cfg.model = getattr(model_presets, model)()
    cfg.data.manifests = [corpus]
    cfg.micro_batch_rows, cfg.parallelism, cfg.out_dir = rows, parallelism, out_dir
    cfg.reshard_after_forward = not keep_params
    cfg.metrics.tensorboard, cfg.eval_every = False, 0
    return cfg


def worker(args: argparse.Namespace) -> None:
    """One rank (started by torchrun): times the train steps and writes this rank's numbers."""
    from bench.trainer_throughput import measure

    cfg = bench_config(
        args.model, args.corpus, args.results / "train", args.rows, args.parallelism, args.keep_params
    )
    rank = int(os.environ["RANK"])
    result = measure(cfg, packed=True, warmup=args.warmup, steps=args.steps)
    (args.results / f"rank-{rank}.json").write_text(json.dumps(result))


def launch(args: argparse.Namespace, gpus: int, corpus: Path, work: Path) -> dict[str, float] | str:
    """The summed numbers of one torchrun launch at `gpus` GPUs, or why it failed."""
    results = work / f"{args.model}-{gpus}"
    results.mkdir(parents=True)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}",
        "-m", "bench.scaling", "worker", "--model", args.model, "--corpus", str(corpus),
        "--results", str(results), "--rows", str(args.rows), "--steps", str(args.steps),
        "--warmup", str(args.warmup), "--parallelism", args.parallelism,
        *(["--keep-params"] if args.keep_params else []),
    ]
    print("$", shlex.join(command), flush=True)
    start = time.perf_counter()
    try:
        finished = subprocess.run(command, timeout=args.run_timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"timed out after {args.run_timeout} s"
    if finished.returncode != 0:
        return f"torchrun exited with {finished.returncode}"
    ranks = [json.loads((results / f"rank-{rank}.json").read_text()) for rank in range(gpus)]
    return {
        "tokens_per_s": sum(r["tokens_per_s"] for r in ranks),
        "mfu": sum(r["mfu"] for r in ranks) / gpus,
        "step_ms": max(r["step_ms"] for r in ranks),
        "peak_gb": max(r["peak_gb"] for r in ranks),
        "wall_s": time.perf_counter() - start,
    }


def report(args: argparse.Namespace, measured: dict[int, dict[str, float] | str]) -> str:
    base = measured.get(1)
    rows = []
    for gpus, result in measured.items():
        if isinstance(result, str):
            rows.append([args.model, gpus, "failed", result, "", "", "", ""])
            continue
        efficiency = result["tokens_per_s"] / (gpus * base["tokens_per_s"]) if isinstance(base, dict) else "n/a"
        rows.append([
            args.model, gpus, f"{result['tokens_per_s']:,.0f}", f"{result['tokens_per_s'] / gpus:,.0f}",
            result["mfu"], result["step_ms"], result["peak_gb"], efficiency,
        ])
    header = ["model", "GPUs", "real tokens/s", "per GPU", "MFU", "step ms", "peak GiB", "scaling efficiency"]
    command = "python -m bench.scaling " + shlex.join(sys.argv[1:])
    return (
        f"{today()} · {torch.cuda.device_count()} x {machine()} · rev {git_revision()} · `{command}` "
        f"(seq_len 4096, best-fit packed, {args.rows} rows per GPU, parallelism {args.parallelism}, "
        f"{'parameters kept from forward to backward, ' if args.keep_params else ''}"
        f"steps {args.steps}, warmup {args.warmup})\n\n" + markdown_table(header, rows)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", nargs="?", choices=["drive", "worker"], default="drive")
    parser.add_argument("--model", choices=MODELS, default="transformer_350m")
    parser.add_argument("--gpus", default="1,2,4,8", help="GPU counts to launch, comma-separated; 1 first")
    parser.add_argument("--rows", type=int, default=4, help="rows of 4096 tokens per GPU per step")
    parser.add_argument("--parallelism", choices=["auto", "fsdp", "ddp"], default="auto",
                        help="auto: FSDP2 on several GPUs, plain on one")
    parser.add_argument("--keep-params", action="store_true",
                        help="FSDP2 keeps gathered parameters from forward to backward (reshard_after_forward off)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--documents", type=int, default=8000)
    parser.add_argument("--run-timeout", type=int, default=300, help="seconds before one launch counts as hung")
    parser.add_argument("--out", type=Path, help="append the markdown result to this file")
    parser.add_argument("--corpus", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--results", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.command == "worker":
        worker(args)
        return
    if not torch.cuda.is_available():
        sys.exit("bench.scaling needs CUDA GPUs")
    counts = [int(n) for n in args.gpus.split(",")]
    if max(counts) > torch.cuda.device_count():
        sys.exit(f"--gpus {args.gpus} asks for more than the {torch.cuda.device_count()} GPUs of this host")
    from bench.trainer_throughput import synthetic_corpus

    work = Path(tempfile.mkdtemp(prefix="scaling-bench-"))
    corpus = synthetic_corpus(work / "tokens", vocab_size=50304, documents=args.documents)
    measured = {gpus: launch(args, gpus, corpus, work) for gpus in counts}
    text = report(args, measured)
    print_and_append(text, args.out)


if __name__ == "__main__":
    main()
