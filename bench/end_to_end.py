"""End-to-end training throughput on one GPU: our trainer (packed rows, Triton kernels) against the same
model built from stock PyTorch ops under torch.compile, at seq_len 4096, in one run.

Variants, all on the same best-fit packed batches from the real loader, full train step (forward, backward,
grad clip, fused AdamW), bf16 autocast:
  ours            varlen flash attention, SSD scan, fused RMSNorm/SwiGLU/RoPE/linear+cross-entropy, eager
  ours+graphs     the same with each forward and backward replayed from CUDA graphs (`cuda_graphs = true`)
  ours+compile    the same with the whole model under torch.compile, which compiles what lies between the
                  kernels and calls the kernels as they are (trainer/ops.py); not run by default
  stock+compile   the kernels off: SDPA with a block-diagonal document mask, RMSNorm/SwiGLU/RoPE as plain
                  tensor ops, full-logits F.cross_entropy, the chunked PyTorch SSD; whole model under
                  torch.compile (what a PyTorch user gets without custom kernels)
  ours-cublas-mlp "ours" with `quack_mlp = false`: where quack-kernels is installed, "ours" runs the MLP on its GEMMs
                  (SwiGLU in the epilogues; the report's header says which MLP ran), this one on cuBLAS + Triton
  ours-triton-loss "ours" with `quack_loss = false`: where quack-kernels is installed on a Hopper GPU, "ours" computes
                  the head's linear + cross-entropy with quack's scaled-exp pipeline, this one with our chunked kernel
  ours-cublas-qkv "ours" with `quack_qkv = false`: where quack-kernels is installed on a Hopper GPU, "ours" projects
                  qkv on quack's GEMM with RoPE in its epilogue, this one on cuBLAS followed by the Triton RoPE pass
  ours-cublas-mamba "ours" with `quack_projections = false`: the Mamba2 mixer's in_proj and out_proj on cuBLAS

MFU = useful FLOPs / time / dense bf16 peak (989 TFLOP/s on H100), useful FLOPs = 6 x matmul parameters per
real token + 12 x d_model per attended (query, key) pair inside documents per attention layer (causal, so
about half of each document's square); the SSD scan's own arithmetic is not counted.

Run on the GPU from the repository root:
    source bench/gpu_env.sh && python -m bench.end_to_end --out $OUT/end_to_end.md
"""

import argparse
import importlib.metadata
import sys
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import torch

from bench.harness import git_revision, machine, markdown_table, print_and_append, today
from bench.matmul_ceiling import SQUARE, time_gemm
from bench.trainer_throughput import measure, synthetic_corpus, warmed_up
from gristmill.kernels.fused.linear_cross_entropy.quack_lce import quack_linear_cross_entropy_unavailable_reason
from gristmill.kernels.fused.swiglu_mlp import swiglu_mlp_unavailable_reason
from gristmill.trainer.config import TrainConfig
from gristmill.trainer.models import presets as model_presets
from gristmill.trainer.models.segments import Segments
from gristmill.trainer.presets import transformer_350m_2k
from gristmill.trainer.train import Trainer

MODELS = ("transformer_350m", "hybrid_350m")


class Variant(NamedTuple):
    kernels: bool
    compiled: bool
    """the whole model under torch.compile"""
    cuda_graphs: bool
    quack_mlp: bool = True
    quack_loss: bool = True
    quack_qkv: bool = True
    quack_projections: bool = True


VARIANTS = {
    "ours": Variant(kernels=True, compiled=False, cuda_graphs=False),
    "ours+graphs": Variant(kernels=True, compiled=False, cuda_graphs=True),
    "ours-cublas-mlp": Variant(kernels=True, compiled=False, cuda_graphs=False, quack_mlp=False),
    "ours-triton-loss": Variant(kernels=True, compiled=False, cuda_graphs=False, quack_loss=False),
    "ours-cublas-qkv": Variant(kernels=True, compiled=False, cuda_graphs=False, quack_qkv=False),
    "ours-cublas-mamba": Variant(kernels=True, compiled=False, cuda_graphs=False, quack_projections=False),
    "ours+compile": Variant(kernels=True, compiled=True, cuda_graphs=False),
    "stock+compile": Variant(kernels=False, compiled=True, cuda_graphs=False),
}
BASELINE = "stock+compile"


def mlp_backend() -> str:
    """Which GEMMs our MLP runs on here: quack's (activation in the epilogue) when installed, else cuBLAS + Triton."""
    probe = [torch.empty(shape, device="cuda", dtype=torch.bfloat16) for shape in ((8, 64), (128, 64), (64, 64))]
    reason = swiglu_mlp_unavailable_reason(*probe)
    if reason is None:
        return f"quack-kernels {importlib.metadata.version('quack-kernels')} GEMMs with SwiGLU epilogues"
    return f"cuBLAS + Triton SwiGLU ({reason.splitlines()[0][:80]})"


def loss_backend(model: str) -> str:
    """Which linear + cross-entropy the head runs here: quack's scaled-exp pipeline when it takes the model's head,
    else our chunked Triton kernel."""
    cfg = getattr(model_presets, model)()
    hidden = torch.empty(8, cfg.d_model, device="cuda", dtype=torch.bfloat16)
    weight = torch.empty(cfg.vocab_size, cfg.d_model, device="cuda", dtype=torch.bfloat16)
    reason = quack_linear_cross_entropy_unavailable_reason(hidden, weight, z_loss=cfg.z_loss)
    if reason is None:
        return f"quack-kernels {importlib.metadata.version('quack-kernels')} scaled-exp linear + cross-entropy"
    return f"Triton chunked linear + cross-entropy ({reason.splitlines()[0][:80]})"


def bench_config(
    model: str, corpus: Path, out_dir: Path, rows: int, variant: str, ffn_hidden: int = 0
) -> TrainConfig:
    """`ffn_hidden` > 0 replaces the preset's SwiGLU width."""
    cfg = transformer_350m_2k()
    cfg.model = getattr(model_presets, model)()
    cfg.model.ffn_hidden = ffn_hidden or cfg.model.ffn_hidden
    cfg.data.manifests, cfg.data.seq_len = [corpus], 4096
    chosen = VARIANTS[variant]
    cfg.kernels, cfg.cuda_graphs = chosen.kernels, chosen.cuda_graphs
    cfg.quack_mlp, cfg.quack_loss, cfg.quack_qkv = chosen.quack_mlp, chosen.quack_loss, chosen.quack_qkv
    cfg.quack_projections = chosen.quack_projections
    cfg.micro_batch_rows, cfg.out_dir = rows, out_dir
    cfg.metrics.tensorboard, cfg.eval_every = False, 0
    return cfg


class CompiledForAnyDocumentCount(torch.nn.Module):
    """The model under torch.compile with one graph for every batch. Each packed batch holds another number of
    documents and another longest one; left alone, dynamo compiles the first batch's values as constants and
    the whole model again on each change (minutes apiece for the hybrid, bench/results/end_to_end.md). So
    `cu_seqlens`' length is dynamic from the start and `max_seqlen` is always the row length, the bound that
    every document piece keeps (as the CUDA-graph path does, trainer/cuda_graph.py)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.compiled = torch.compile(model)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, segments: Segments) -> torch.Tensor:
        torch._dynamo.maybe_mark_dynamic(segments.cu_seqlens, 0)
        return self.compiled(input_ids, labels, replace(segments, max_seqlen=input_ids.shape[1]))


def compile_model(trainer: Trainer) -> None:
    trainer.model = CompiledForAnyDocumentCount(trainer.model)


def run_variant(args: argparse.Namespace, model: str, name: str, corpus: Path, work: Path) -> dict | str:
    compiled = VARIANTS[name].compiled
    cfg = bench_config(model, corpus, work / f"{model}-{name}", args.rows, name, args.ffn_hidden)
    try:
        return measure(cfg, True, args.warmup, args.steps, compile_model if compiled else None)
    except Exception as error:  # a variant that cannot run is reported as failed; the others still run
        traceback.print_exc()
        torch.cuda.empty_cache()
        return f"failed: {type(error).__name__}: {str(error).splitlines()[0][:120] if str(error) else ''}"


def profile_variant(args: argparse.Namespace, model: str, name: str, corpus: Path, work: Path) -> None:
    """Prints where one variant's step time goes: the top CUDA kernels and the GPU-busy share of the wall time
    (a low share means the step waits on the host, e.g. kernel launches)."""
    from torch.profiler import ProfilerActivity, profile

    compiled = VARIANTS[name].compiled
    cfg = bench_config(model, corpus, work / f"{model}-{name}-profile", args.rows, name, args.ffn_hidden)
    trainer, batches = warmed_up(cfg, True, args.warmup, compile_model if compiled else None)
    torch.cuda.synchronize()
    steps = 3
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        start = time.perf_counter()
        for _ in range(steps):
            trainer.train_step([next(batches)])
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    print(f"profile {model} {name}: wall {1000 * wall / steps:.1f} ms/step, GPU kernels "
          f"{gpu_us / 1000 / steps:.1f} ms/step ({gpu_us / 1e6 / wall:.0%} busy)")
    print(events.table(sort_by="self_device_time_total", row_limit=args.profile_rows))
    trainer.close()
    torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {MODELS}")
    parser.add_argument("--variants", default=f"ours,{BASELINE}", help=f"comma-separated, from {tuple(VARIANTS)}")
    parser.add_argument("--rows", type=int, default=16, help="rows of 4096 tokens per step (16 fit an 80 GB H100)")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps (torch.compile compiles here)")
    parser.add_argument("--documents", type=int, default=8000)
    parser.add_argument("--ffn-hidden", type=int, default=0, help="the models' SwiGLU width instead of the "
                        "presets' (8/3 d_model rounded up to 64): to time another width, a tile-aligned one say")
    parser.add_argument("--out", type=Path, help="append the markdown result to this file")
    parser.add_argument("--profile", default="", help="comma-separated variants to profile after timing")
    parser.add_argument("--profile-rows", type=int, default=25)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench.end_to_end needs a CUDA GPU")
    models, variants = args.models.split(","), args.variants.split(",")
    unknown = sorted(set(models) - set(MODELS)) + sorted(set(variants) - set(VARIANTS))
    if unknown:
        sys.exit(f"unknown model or variant: {', '.join(unknown)}")
    if args.ffn_hidden < 0:
        sys.exit(f"--ffn-hidden must be a width > 0 (or 0 for the presets'), got {args.ffn_hidden}")

    work = Path(tempfile.mkdtemp(prefix="end-to-end-bench-"))
    corpus = synthetic_corpus(work / "tokens", vocab_size=50304, documents=args.documents)
    rows = []
    for model in models:
        results = {}
        for name in variants:  # printed one by one, so a run cut short by its time limit still reports
            started = time.perf_counter()
            results[name] = run_variant(args, model, name, corpus, work)
            print(f"{model} {name} ({time.perf_counter() - started:.0f} s with warmup): {results[name]}", flush=True)
        for name in filter(None, args.profile.split(",")):
            profile_variant(args, model, name, corpus, work)
        base = results.get(BASELINE)
        for name, result in results.items():
            if isinstance(result, str):
                rows.append([model, name, result, "", "", "", "", "", ""])
                continue
            ratio = result["tokens_per_s"] / base["tokens_per_s"] if isinstance(base, dict) else "n/a"
            rows.append([model, name, f"{result['tokens_per_s']:,.0f}", result["mfu"], result["step_ms"],
                         result["peak_gb"], result["reserved_gb"], ratio, result["graphs_compiled_while_timed"]])
    header = ["model (seq 4096)", "variant", "real tokens/s", "MFU", "step ms", "peak GiB", "peak reserved GiB",
              f"x {BASELINE}", "graphs compiled while timed (must be 0)"]
    # H100s of one kind differ by a few percent under sustained load; this card's cuBLAS speed, timed warm after the
    # runs, lets reports from different machines be compared
    square_tflops = 2 * SQUARE**3 / time_gemm(SQUARE, SQUARE, SQUARE, "dgrad") / 1e9
    report = (
        f"{today()} · {machine()} · rev {git_revision()} · `python -m bench.end_to_end` (rows {args.rows} x 4096, "
        f"steps {args.steps}, warmup {args.warmup}{f', ffn_hidden {args.ffn_hidden}' if args.ffn_hidden else ''}) "
        f"· our MLP: {mlp_backend()} · our loss: "
        f"{'; '.join(f'{model} {loss_backend(model)}' for model in models)} · this card's square {SQUARE} bf16 "
        f"GEMM (cuBLAS): {square_tflops:.0f} TFLOP/s\n\n" + markdown_table(header, rows)
    )
    print_and_append(report, args.out)


if __name__ == "__main__":
    main()
