"""Trainer throughput: packed training against a plain padded baseline, same model, same GPU, one run.

ours      best-fit packed rows from the real loader (workers, pinned memory), varlen flash attention and
          the fused kernels (whatever imports; the log names any that fell back to PyTorch)
packed-ref  the same packed batches on the PyTorch reference ops (SDPA with a block-diagonal mask), which
          separates what packing gains from what the kernels gain
baseline  one document per row, truncated to seq_len and padded, SDPA causal, plain PyTorch ops

All three run the full train step (forward, backward, grad clip, fused AdamW) in bf16 autocast. tokens/s
counts real (non-pad) tokens; MFU counts only useful FLOPs (6 x matmul params per real token plus causal
attention inside documents) against the GPU's dense bf16 peak, so padding never counts as work.

Run on the GPU from the repository root:
    source bench/gpu_env.sh && python -m bench.trainer_throughput --out $OUT/trainer.md
"""

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from bench.harness import git_revision, machine, markdown_table, today
from gristmill.tokenizer.shard_format import TokenDataset, write_token_dataset
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.data import DocumentStream
from gristmill.trainer.metrics import training_flops
from gristmill.trainer.packing import PackedBatch, Piece, collate
from gristmill.trainer.presets import transformer_125m_2k, transformer_350m_2k
from gristmill.trainer.train import Trainer

EOS = 0
MAX_EXTRA_WARMUP = 12
"""Most untimed steps added after the warmup while torch.compile still builds graphs."""
QUIET_STEPS = 3
"""Consecutive steps without a new graph that end the extra warmup: one quiet step proved too few (a later
batch's new document count recompiled the stock hybrid while timed, bench/results/end_to_end.md run 4)."""


def synthetic_corpus(directory: Path, vocab_size: int, documents: int, seed: int = 0) -> Path:
    """Log-normal document lengths (median 500 tokens, long tail clipped at 16k), like filtered web text."""
    rng = np.random.default_rng(seed)
    lengths = np.clip(rng.lognormal(np.log(500), 1.0, documents).astype(int), 16, 16384)
    docs = [np.append(rng.integers(1, vocab_size, n - 1), EOS).astype(np.uint32) for n in lengths]
    return write_token_dataset(directory, docs, vocab_size=vocab_size, eos_id=EOS, docs_per_shard=1000)


def padded_batches(cfg: TrainConfig) -> Iterator[PackedBatch]:
    """The baseline's input: each row one document from the same shuffled stream, cut at seq_len, padded."""
    dataset = TokenDataset(cfg.data.manifests[0])
    stream = DocumentStream([dataset], [dataset.split_indices("train")], shard=0, num_shards=1, seed=cfg.data.seed)
    seq_len = cfg.data.seq_len
    while True:
        rows = []
        for _ in range(cfg.micro_batch_rows):
            document = stream.next_document()
            rows.append([Piece(document, 0, min(len(document), seq_len))])
        yield collate(rows, seq_len, pad_id=EOS)


def compiled_graphs() -> int:
    """Graphs torch.compile has built in this process: a count that grows while timing means the timed steps
    paid for (re)compilation and the warmup was too short."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def warmed_up(
    cfg: TrainConfig, packed: bool, warmup: int, prepare: Callable[[Trainer], None] | None = None
) -> tuple[Trainer, Iterator[PackedBatch]]:
    """A trainer and its batch stream after `warmup` untimed steps, and more while torch.compile still builds
    graphs; `prepare` may edit the built trainer (e.g. wrap its model in torch.compile) before the first step."""
    trainer = Trainer(cfg)
    if prepare is not None:
        prepare(trainer)
    batches = iter(trainer.loader) if packed else padded_batches(cfg)
    for _ in range(warmup):
        trainer.train_step([next(batches)])
    quiet = 0  # torch.compile may still be specializing on new batch shapes (a new document count, say)
    for _ in range(MAX_EXTRA_WARMUP):
        graphs_before = compiled_graphs()
        trainer.train_step([next(batches)])
        quiet = quiet + 1 if compiled_graphs() == graphs_before else 0
        if quiet == QUIET_STEPS:
            break
    return trainer, batches


def measure(
    cfg: TrainConfig, packed: bool, warmup: int, steps: int, prepare: Callable[[Trainer], None] | None = None
) -> dict[str, float]:
    """Times `steps` full train steps of a `warmed_up` trainer."""
    trainer, batches = warmed_up(cfg, packed, warmup, prepare)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    graphs_before = compiled_graphs()
    real = slots = 0
    flops = 0.0
    start = time.perf_counter()
    for _ in range(steps):
        batch = next(batches)
        loss, _ = trainer.train_step([batch])
        real += batch.real_tokens
        slots += batch.input_ids.numel()
        flops += training_flops(cfg.model, trainer.matmul_params, batch)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {
        "tokens_per_s": real / seconds,
        "mfu": flops / seconds / trainer.peak if trainer.peak else float("nan"),
        "packing_efficiency": real / slots,
        "step_ms": 1000 * seconds / steps,
        "peak_gb": torch.cuda.max_memory_allocated() / 2**30,
        # CUDA graphs keep their activations in a private pool that replays never allocate from again, so
        # only the reserved peak (which holds that pool) compares across variants
        "reserved_gb": torch.cuda.max_memory_reserved() / 2**30,
        "loss": float(loss),
        "graphs_compiled_while_timed": compiled_graphs() - graphs_before,
    }
    trainer.close()
    del trainer, batches
    torch.cuda.empty_cache()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown result here")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--documents", type=int, default=4000)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("trainer_throughput needs a CUDA GPU")

    work = Path(tempfile.mkdtemp(prefix="trainer-bench-"))
    corpus = synthetic_corpus(work / "tokens", vocab_size=50304, documents=args.documents)
    variants = [("ours", True, True), ("packed-ref", True, False), ("baseline", False, False)]
    rows = []
    for preset in (transformer_125m_2k, transformer_350m_2k):
        results = {}
        for name, packed, kernels in variants:
            cfg = preset()
            cfg.data.manifests, cfg.out_dir = [corpus], work / f"{preset.__name__}-{name}"
            cfg.kernels = kernels
            cfg.metrics.tensorboard, cfg.eval_every = False, 0
            results[name] = measure(cfg, packed, args.warmup, args.steps)
            print(preset.__name__, name, results[name], flush=True)
        for name, result in results.items():
            rows.append([
                preset.__name__, name, f"{result['tokens_per_s']:,.0f}", result["mfu"],
                result["packing_efficiency"], result["step_ms"], result["peak_gb"],
                result["tokens_per_s"] / results["baseline"]["tokens_per_s"],
            ])
    header = ["preset (seq 2048, 8 rows)", "variant", "real tokens/s", "MFU", "non-pad", "step ms", "peak GiB",
              "x baseline"]
    report = (
        f"{today()} · {machine()} · rev {git_revision()} · `python -m bench.trainer_throughput` "
        f"(steps {args.steps}, warmup {args.warmup})\n\n" + markdown_table(header, rows)
    )
    print(report)
    if args.out:
        args.out.write_text(report + "\n")


if __name__ == "__main__":
    main()
