"""Fused training kernels vs eager PyTorch and torch.compile of the same reference: fwd+bwd time, peak memory.

Run on the GPU from the repository root, after the kernel tests pass:
    source bench/gpu_env.sh && python -m pytest -o addopts="" tests/kernels/test_rms_norm.py ... \
        && python -m bench.fused_kernels --out $OUT/fused.md
`--lce-rows` first times linear + cross-entropy's rows kernel alone, main's launch against the candidates.
"""

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
import triton
from triton.runtime.errors import OutOfResources

from bench.harness import markdown_table, peak_memory_mb, run_stamp, time_ms, write_report
from gristmill.kernels import fused
from gristmill.kernels.fused.linear_cross_entropy.reference import cross_entropy_reference
from gristmill.kernels.fused.linear_cross_entropy.rows_kernel import RowsLaunch, cross_entropy_rows
from gristmill.kernels.fused.linear_cross_entropy.triton_fwd_bwd import default_chunk_size
from gristmill.kernels.testing import relative_error

DEVICE = "cuda"
Step = Callable[[Callable], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class Case:
    """One op at one size: `step(fn)` runs fwd+bwd of `fn` on fixed inputs and returns output and grads."""

    name: str
    shape: str
    triton_fn: Callable
    reference_fn: Callable
    step: Step
    min_bytes: float = 0.0
    flops: float = 0.0


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().requires_grad_() for t in tensors]


def rms_norm_case(tokens: int = 16384, dim: int = 4096) -> Case:
    x, residual = (torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    weight = torch.randn(dim, device=DEVICE, dtype=torch.bfloat16)
    dy, dstream = torch.randn_like(x), torch.randn_like(x)
    x, residual, weight = _leaves(x, residual, weight)

    def step(fn):
        y, stream = fn(x, weight, residual=residual)
        return (y, *torch.autograd.grad((y, stream), (x, weight, residual), (dy, dstream)))

    # fwd reads x, residual, writes y, stream; bwd reads dy, dstream, stream, writes dx
    return Case("rms_norm+residual", f"T{tokens} D{dim} bf16", fused.rms_norm, fused.rms_norm_reference, step,
                min_bytes=8 * x.numel() * 2)


def gated_rms_norm_case(tokens: int = 32768, dim: int = 2048, projection_width: int = 4384) -> Case:
    """Mamba2's gated norm as the mixer calls it: the gate z is the first `dim` columns of the in_proj output."""
    if projection_width < dim:
        raise ValueError(f"gated_rms_norm_case: projection_width {projection_width} is narrower than dim {dim}")
    projection = torch.randn(tokens, projection_width, device=DEVICE, dtype=torch.bfloat16)
    x = torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16)
    weight = torch.randn(dim, device=DEVICE, dtype=torch.bfloat16)
    dy = torch.randn_like(x)
    x, gate, weight = _leaves(x, projection[:, :dim], weight)

    def step(fn):
        y = fn(x, gate, weight)
        return (y, *torch.autograd.grad(y, (x, gate, weight), dy))

    # fwd reads x, gate, writes y; bwd reads dy, x, gate, writes dx, dgate
    return Case("gated_rms_norm", f"T{tokens} D{dim} z from [{tokens}, {projection_width}] bf16",
                fused.gated_rms_norm, fused.gated_rms_norm_reference, step, min_bytes=8 * x.numel() * 2)


def swiglu_case(tokens: int = 16384, ffn: int = 14336) -> Case:
    gate, up = _leaves(*(torch.randn(tokens, ffn, device=DEVICE, dtype=torch.bfloat16) for _ in range(2)))
    dy = torch.randn_like(gate)

    def step(fn):
        y = fn(gate, up)
        return (y, *torch.autograd.grad(y, (gate, up), dy))

    # fwd reads gate, up, writes y; bwd reads gate, up, dy, writes dgate, dup
    return Case("swiglu", f"T{tokens} F{ffn} bf16", fused.swiglu, fused.swiglu_reference, step,
                min_bytes=8 * gate.numel() * 2)


def rope_case(tokens: int = 16384, q_heads: int = 32, kv_heads: int = 8, head_dim: int = 128) -> Case:
    q_leaf = torch.randn(tokens, q_heads, head_dim, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    k_leaf = torch.randn(tokens, kv_heads, head_dim, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    dq, dk = torch.randn_like(q_leaf), torch.randn_like(k_leaf)
    positions = (torch.arange(tokens, device=DEVICE) % 4096).to(torch.int32)

    def step(fn):
        # the clone stands in for the projection that produces q, k: both sides pay it
        q, k = fn(q_leaf.clone(), k_leaf.clone(), positions)
        return (q, k, *torch.autograd.grad((q, k), (q_leaf, k_leaf), (dq, dk)))

    # fwd reads and writes q, k; bwd reads dq, dk and writes their rotations
    return Case("rope", f"T{tokens} Hq{q_heads} Hkv{kv_heads} D{head_dim} bf16", fused.apply_rope,
                fused.apply_rope_reference, step, min_bytes=4 * (q_leaf.numel() + k_leaf.numel()) * 2)


def linear_cross_entropy_case(tokens: int = 8192, dim: int = 4096, vocab: int = 128256) -> Case:
    hidden = torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16)
    weight = torch.randn(vocab, dim, device=DEVICE, dtype=torch.bfloat16) / dim**0.5
    labels = torch.randint(0, vocab, (tokens,), device=DEVICE)
    labels[::17] = -100
    hidden, weight = _leaves(hidden, weight)

    def step(fn):
        loss = fn(hidden, weight, labels)
        return (loss, *torch.autograd.grad(loss, (hidden, weight)))

    return Case("linear_cross_entropy", f"N{tokens} D{dim} V{vocab} bf16", fused.linear_cross_entropy,
                fused.linear_cross_entropy_reference, step, flops=3 * 2 * tokens * dim * vocab)


ROWS_SHAPES = ((32768, 50304), (8192, 128256), (32768, 32000))  # the 350m models; the 128k; a 32k vocab
ROWS_Z_LOSS = 1e-4


def rows_launch_candidates(vocab: int) -> dict[str, RowsLaunch | None]:
    """Main's launch first (one 8-warp program per row, 4096-wide blocks), the planned one (None), one pass
    where a 32k tile holds the row, then two passes on other blocks and warp counts."""
    candidates: dict[str, RowsLaunch | None] = {"main's launch": RowsLaunch(False, 4096, 8), "planned": None}
    tile = triton.next_power_of_2(vocab)
    if tile <= 32768:
        candidates.update({f"one-pass w{w}": RowsLaunch(True, tile, w) for w in (16, 32)})
    for block, warps in ((2048, 4), (4096, 16), (8192, 16), (16384, 16)):
        candidates[f"two-pass b{block} w{warps}"] = RowsLaunch(False, block, warps)
    return candidates


def measure_rows_kernel(n_rows: int, vocab: int) -> list[list[object]]:
    """Each candidate launch of the rows kernel on [N, V] bf16 logits, chunk by chunk as linear_cross_entropy
    launches it: time, bandwidth, error against the float64 reference on every k-th row. Bytes counted: the
    logits read once and the gradient written once, what a one-pass kernel moves.
    """
    logits = torch.randn(n_rows, vocab, device=DEVICE, dtype=torch.bfloat16) * 4
    labels = torch.randint(0, vocab, (n_rows,), device=DEVICE)
    labels[::17] = -100
    scale = torch.full((1,), 1.0 / n_rows, device=DEVICE)
    loss = torch.empty(n_rows, device=DEVICE)
    checked = slice(None, None, max(1, n_rows // 512))
    ref_logits = logits[checked].double().requires_grad_()
    ref_loss = cross_entropy_reference(ref_logits, labels[checked], z_loss=ROWS_Z_LOSS, reduction="none")
    (ref_grad,) = torch.autograd.grad(ref_loss.sum() / n_rows, ref_logits)
    chunk = default_chunk_size(n_rows, vocab)

    def run(launch: RowsLaunch | None, buffer: torch.Tensor) -> None:
        for start in range(0, n_rows, chunk):
            rows = slice(start, start + chunk)
            cross_entropy_rows(buffer[rows], labels[rows], loss[rows], scale, -100, ROWS_Z_LOSS, 0.0, launch)

    work = torch.empty_like(logits)
    rows, first_ms = [], None
    for name, launch in rows_launch_candidates(vocab).items():
        work.copy_(logits)
        try:
            run(launch, work)
        except OutOfResources as error:
            rows.append([f"N{n_rows} V{vocab}", name, "-", "-", "-", f"does not launch: {error}"])
            continue
        error = max(relative_error(work[checked], ref_grad), relative_error(loss[checked], ref_loss))
        ms = time_ms(lambda launch=launch: run(launch, work))
        first_ms = first_ms or ms
        rows.append([f"N{n_rows} V{vocab} chunk {chunk}", name, ms, first_ms / ms,
                     f"{4 * n_rows * vocab / ms / 1e6:.0f}", f"{error:.1e}"])
    return rows


ROWS_HEADER = ["shape", "launch", "ms", "main's launch / this", "GB/s (read + write once)", "rel err vs fp64"]


def measure(case: Case) -> list[object]:
    """Times and peak memory of eager, compiled and Triton fwd+bwd, and the Triton result's error."""
    compiled = torch.compile(case.reference_fn, dynamic=False)
    impls = {"eager": case.reference_fn, "compile": compiled, "triton": case.triton_fn}
    outputs = {label: case.step(fn) for label, fn in impls.items()}  # also warms up and compiles
    error = max(relative_error(out.float(), ref.float()) for out, ref in zip(outputs["triton"], outputs["eager"]))
    del outputs
    times = {label: time_ms(lambda fn=fn: case.step(fn)) for label, fn in impls.items()}
    memory = {label: peak_memory_mb(lambda fn=fn: case.step(fn)) for label, fn in impls.items()}
    seconds = times["triton"] / 1e3
    achieved = f"{case.min_bytes / seconds / 1e9:.0f} GB/s" if case.min_bytes else f"{case.flops / seconds / 1e12:.0f} TFLOP/s"
    return [
        case.name, case.shape, times["eager"], times["compile"], times["triton"],
        times["eager"] / times["triton"], times["compile"] / times["triton"],
        memory["eager"], memory["compile"], memory["triton"],
        memory["triton"] / memory["eager"], memory["triton"] / memory["compile"], achieved, f"{error:.1e}",
    ]


HEADER = [
    "op", "shape", "eager ms", "compile ms", "triton ms", "eager/triton", "compile/triton",
    "eager MiB", "compile MiB", "triton MiB", "mem triton/eager", "mem triton/compile", "triton achieved",
    "max rel err vs eager",
]
CASES = {
    "linear_cross_entropy": linear_cross_entropy_case,
    "linear_cross_entropy_model": partial(linear_cross_entropy_case, tokens=32768, dim=1024, vocab=50304),
    "rms_norm": rms_norm_case,
    "rms_norm_model": partial(rms_norm_case, tokens=32768, dim=1024),  # the models' norm: T 32768, D 1024
    "gated_rms_norm": gated_rms_norm_case,
    "swiglu": swiglu_case,
    "rope": rope_case,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", help="also write the markdown table here")
    parser.add_argument("--lce-rows", action="store_true", help="first time the cross-entropy rows kernel alone")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("fused_kernels benchmark needs a CUDA GPU")
    report_lines = [f"{run_stamp()} · fwd+bwd, median of do_bench, peak = max allocated above inputs"]
    if args.lce_rows:
        rows_table = markdown_table(ROWS_HEADER, [row for shape in ROWS_SHAPES for row in measure_rows_kernel(*shape)])
        print(rows_table, flush=True)
        report_lines.append(rows_table)
        torch.cuda.empty_cache()
    rows = []
    for op in args.ops:
        rows.append(measure(CASES[op]()))
        print(markdown_table(HEADER, rows[-1:]), flush=True)
        torch.cuda.empty_cache()
    report = write_report([*report_lines, markdown_table(HEADER, rows)], args.out)
    print(report)


if __name__ == "__main__":
    main()
