"""The MFU a model's training step could reach if it were nothing but its matmuls, at cuBLAS's speed on this GPU.

Every projection of the model (nn.Linear, as built from its preset) runs three GEMMs per step: forward
`[T, in] @ [in, out]`, input gradient `[T, out] @ [out, in]` and weight gradient `[out, T] @ [T, in]`; the output
head runs them per chunk of rows as linear + cross-entropy does. Each is timed alone with bf16 inputs, next to a
square 8192 GEMM (cuBLAS's best case) in the same run. The ceiling is the step's useful FLOPs (as
bench/end_to_end.py counts them, attention excluded) over the summed GEMM time and the datasheet peak: no
attention, norm, activation or optimizer time is in it, so the measured MFU sits below it by exactly those.

Run on the GPU from the repository root:
    source bench/gpu_env.sh && python -m bench.matmul_ceiling --out $OUT/matmul_ceiling.md
"""

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

from bench.harness import git_revision, machine, markdown_table, print_and_append, time_ms, today
from gristmill.kernels.fused.linear_cross_entropy.triton_fwd_bwd import default_chunk_size
from gristmill.trainer.metrics import peak_flops
from gristmill.trainer.models import presets as model_presets
from gristmill.trainer.models.model import LanguageModel

SQUARE = 8192


def step_gemms(model: str, tokens: int) -> list[tuple[str, int, int, int, int]]:
    """(name, M, K, N, launches per step) of every GEMM in one training step over `tokens` tokens."""
    cfg = getattr(model_presets, model)()
    with torch.device("meta"):
        built = LanguageModel(cfg)
    shapes: dict[tuple[int, int], list[str]] = {}
    for name, module in built.named_modules():
        if isinstance(module, nn.Linear) and module is not built.output:
            shapes.setdefault((module.in_features, module.out_features), []).append(name.split(".")[-1])
    gemms = []
    for (fan_in, fan_out), names in shapes.items():
        label, count = f"{names[0]} {fan_in}->{fan_out}", len(names)
        gemms += [
            (f"{label} fwd", tokens, fan_in, fan_out, count),
            (f"{label} dgrad", tokens, fan_out, fan_in, count),
            (f"{label} wgrad", fan_out, tokens, fan_in, count),
        ]
    chunk = default_chunk_size(tokens, cfg.vocab_size)
    chunks = -(-tokens // chunk)
    gemms += [
        (f"head chunk {chunk} fwd", chunk, cfg.d_model, cfg.vocab_size, chunks),
        (f"head chunk {chunk} dgrad", chunk, cfg.vocab_size, cfg.d_model, chunks),
        (f"head chunk {chunk} wgrad", cfg.vocab_size, chunk, cfg.d_model, chunks),
    ]
    return gemms


def time_gemm(m: int, k: int, n: int, kind: str) -> float:
    """Milliseconds of one [m, k] @ [k, n] bf16 GEMM with the operand layouts autograd hands cuBLAS: the forward
    multiplies by a transposed weight (`F.linear`), the weight gradient's left operand is a transposed gradient."""
    a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(k, n, device="cuda", dtype=torch.bfloat16)
    if kind == "fwd":
        b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16).t()
    elif kind == "wgrad":
        a = torch.randn(k, m, device="cuda", dtype=torch.bfloat16).t()
    return time_ms(lambda: a @ b)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="transformer_350m,hybrid_350m", help="comma-separated model presets")
    parser.add_argument("--rows", type=int, default=16, help="rows per step, as bench.end_to_end runs them")
    parser.add_argument("--seq-len", type=int, default=4096)
    parser.add_argument("--out", type=Path, help="append the markdown result to this file")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench.matmul_ceiling needs a CUDA GPU")
    peak = peak_flops(torch.device("cuda"), 0.0)
    if peak is None:
        sys.exit(f"no datasheet bf16 peak known for {torch.cuda.get_device_name()}")
    tokens = args.rows * args.seq_len
    square_ms = time_gemm(SQUARE, SQUARE, SQUARE, "dgrad")
    square_tflops = 2 * SQUARE**3 / square_ms / 1e9
    header_line = (
        f"{today()} · {machine()} · rev {git_revision()} · `python -m bench.matmul_ceiling` (rows {args.rows} x "
        f"{args.seq_len}) · square {SQUARE} GEMM: {square_ms:.3f} ms, {square_tflops:.0f} TFLOP/s"
    )
    report = [header_line]
    for model in args.models.split(","):
        rows, total_ms, total_flop = [], 0.0, 0.0
        for name, m, k, n, count in step_gemms(model, tokens):
            ms = time_gemm(m, k, n, name.rsplit(" ", 1)[1])
            flop = 2 * m * k * n
            total_ms, total_flop = total_ms + ms * count, total_flop + flop * count
            tflops = flop / ms / 1e9
            rows.append([name, m, k, n, count, f"{ms * 1e3:.1f}", f"{tflops:.0f}", f"{tflops / square_tflops:.2f}"])
            print(model, rows[-1], flush=True)
        ceiling = total_flop / (total_ms / 1e3) / peak
        header = ["GEMM", "M", "K", "N", "per step", "us", "TFLOP/s", "x square"]
        report.append(
            f"{model}: {total_ms:.1f} ms of GEMMs per step at {total_flop / total_ms / 1e9:.0f} TFLOP/s; a step of "
            f"only these GEMMs would reach MFU {ceiling:.3f}\n\n" + markdown_table(header, rows)
        )
    print_and_append("\n\n".join(report), args.out)


if __name__ == "__main__":
    main()
