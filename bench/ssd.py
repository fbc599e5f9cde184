"""Mamba2 SSD scan over packed documents: ours (Triton) vs mamba_ssm's `mamba_chunk_scan_combined` with
`seq_idx` (pure Triton, from `.peer/` on PYTHONPATH) vs the plain PyTorch chunked reference.

Run on the GPU from the repository root, after the SSD tests:
    source bench/gpu_env.sh && PYTHONPATH=$PWD/.peer:$PYTHONPATH python -m bench.ssd --out $OUT/ssd.md
"""

import argparse
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from bench.harness import markdown_table, peak_memory_mb, run_stamp, time_ms, write_report
from gristmill.kernels.ssd import ssd_chunked_reference, ssd_scan
from gristmill.kernels.testing import relative_error

DEVICE = "cuda"
TORCH_BASELINE_MAX_TOKENS = 65536  # the chunked reference holds [chunks, H, L, L] fp32 several times over


@dataclass(frozen=True)
class Shape:
    batch: int
    seqlen: int
    heads: int = 32
    head_dim: int = 64
    state_dim: int = 128
    groups: int = 1
    chunk_size: int = 256
    packed: bool = True

    def __str__(self) -> str:
        docs = "packed docs" if self.packed else "one doc per row"
        return f"B{self.batch} L{self.seqlen} H{self.heads} P{self.head_dim} N{self.state_dim} {docs}"


@dataclass
class Inputs:
    leaves: dict[str, torch.Tensor]
    cu_seqlens: torch.Tensor
    seq_idx: torch.Tensor | None
    dy: torch.Tensor
    n_docs: int


def row_document_lengths(seqlen: int, rng: random.Random) -> list[int]:
    """Log-uniform lengths from 1 to the row length, the last one cut at the row end."""
    lengths, filled = [], 0
    while filled < seqlen:
        length = min(int(2 ** rng.uniform(0, math.log2(seqlen))), seqlen - filled)
        lengths.append(length)
        filled += length
    return lengths


def make_inputs(shape: Shape) -> Inputs:
    torch.manual_seed(0)
    rng = random.Random(0)
    T, H, P, G, N = shape.batch * shape.seqlen, shape.heads, shape.head_dim, shape.groups, shape.state_dim
    rows = [row_document_lengths(shape.seqlen, rng) if shape.packed else [shape.seqlen] for _ in range(shape.batch)]
    lengths = [n for row in rows for n in row]
    cu = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32, device=DEVICE)
    doc_ids = torch.repeat_interleave(torch.arange(len(lengths), device=DEVICE), torch.tensor(lengths, device=DEVICE))
    seq_idx = doc_ids.view(shape.batch, shape.seqlen).to(torch.int32) if shape.packed else None
    bf16 = {"device": DEVICE, "dtype": torch.bfloat16}
    leaves = {
        "x": torch.randn(T, H, P, **bf16),
        "dt": torch.nn.functional.softplus(torch.randn(T, H, device=DEVICE) - 3.0),
        "A": -torch.exp(torch.rand(H, device=DEVICE) * 3.0),
        "B": torch.randn(T, G, N, **bf16) / N**0.5,
        "C": torch.randn(T, G, N, **bf16) / N**0.5,
        "D": torch.randn(H, device=DEVICE),
    }
    leaves = {k: v.requires_grad_() for k, v in leaves.items()}
    return Inputs(leaves, cu, seq_idx, torch.randn(T, H, P, **bf16), len(lengths))


def ours(inputs: Inputs, shape: Shape) -> torch.Tensor:
    v = inputs.leaves
    return ssd_scan(v["x"], v["dt"], v["A"], v["B"], v["C"], D=v["D"], cu_seqlens=inputs.cu_seqlens,
                    chunk_size=shape.chunk_size)  # fmt: skip


def torch_chunked(inputs: Inputs, shape: Shape) -> torch.Tensor:
    v = inputs.leaves
    return ssd_chunked_reference(v["x"], v["dt"], v["A"], v["B"], v["C"], D=v["D"], cu_seqlens=inputs.cu_seqlens,
                                 chunk_size=shape.chunk_size)  # fmt: skip


def load_peer() -> Callable[[Inputs, Shape], torch.Tensor] | None:
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except ImportError as error:
        print(f"mamba_ssm column skipped: cannot import mamba_ssm.ops.triton.ssd_combined ({error}); "
              "put the peer's source under .peer/ and on PYTHONPATH")  # fmt: skip
        return None

    def peer(inputs: Inputs, shape: Shape) -> torch.Tensor:
        v, b, l = inputs.leaves, shape.batch, shape.seqlen
        y = mamba_chunk_scan_combined(
            v["x"].view(b, l, *v["x"].shape[1:]), v["dt"].view(b, l, -1), v["A"],
            v["B"].view(b, l, *v["B"].shape[1:]), v["C"].view(b, l, *v["C"].shape[1:]),
            shape.chunk_size, D=v["D"], seq_idx=inputs.seq_idx,
        )  # fmt: skip
        return y.view(v["x"].shape)

    return peer


def measure(fn: Callable[[Inputs, Shape], torch.Tensor], inputs: Inputs, shape: Shape) -> tuple[float, float, float]:
    """Forward ms (no autograd graph), fwd+bwd ms and fwd+bwd peak MiB above the inputs."""
    leaves = list(inputs.leaves.values())

    def forward() -> torch.Tensor:
        with torch.no_grad():
            return fn(inputs, shape)

    def forward_backward() -> tuple[torch.Tensor, ...]:
        return torch.autograd.grad(fn(inputs, shape), leaves, inputs.dy)

    forward_backward()
    return time_ms(forward), time_ms(forward_backward), peak_memory_mb(forward_backward)


HEADER = [
    "shape", "docs", "ours fwd ms", "mamba fwd ms", "fwd mamba/ours", "torch fwd ms", "ours f+b ms",
    "mamba f+b ms", "f+b mamba/ours", "torch f+b ms", "ours MiB", "mamba MiB", "mem ours/mamba",
    "rel err y vs mamba",
]


def run_shape(shape: Shape, peer) -> list[object]:
    inputs = make_inputs(shape)
    mine = measure(ours, inputs, shape)
    theirs, error = (float("nan"),) * 3, float("nan")
    if peer is not None:
        theirs = measure(peer, inputs, shape)
        with torch.no_grad():
            error = relative_error(ours(inputs, shape), peer(inputs, shape))
    plain = (float("nan"),) * 3
    if shape.batch * shape.seqlen <= TORCH_BASELINE_MAX_TOKENS:
        try:
            plain = measure(torch_chunked, inputs, shape)
        except torch.OutOfMemoryError:  # its einsums can outgrow the card; the row keeps the other columns
            print(f"torch chunked reference skipped at {shape}: out of memory", flush=True)
    torch.cuda.empty_cache()
    return [
        str(shape), inputs.n_docs, mine[0], theirs[0], theirs[0] / mine[0], plain[0], mine[1], theirs[1],
        theirs[1] / mine[1], plain[1], mine[2], theirs[2], mine[2] / theirs[2], f"{error:.1e}",
    ]


SHAPES = {  # in the order of interest, so a run cut short has the main rows; P64 first, sharing its autotuning
    "main": Shape(8, 8192),
    "seq2k": Shape(8, 2048),
    "seq32k": Shape(8, 32768),
    "headdim128": Shape(8, 8192, head_dim=128),
    "main-no-resets": Shape(8, 8192, packed=False),
}


def profile(fn: Callable[[Inputs, Shape], torch.Tensor], shape: Shape) -> str:
    """Per-kernel CUDA time of a fwd+bwd, to see where the time goes."""
    inputs = make_inputs(shape)
    leaves = list(inputs.leaves.values())
    torch.autograd.grad(fn(inputs, shape), leaves, inputs.dy)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(5):
            torch.autograd.grad(fn(inputs, shape), leaves, inputs.dy)
        torch.cuda.synchronize()
    return prof.key_averages().table(sort_by="cuda_time_total", row_limit=14)


def compile_kernels(contenders: list[Callable[[Inputs, Shape], torch.Tensor]], shapes: list[Shape]) -> None:
    """One fwd+bwd of each contender per shape: fills Triton's on-disk compile cache, so a timed run started
    after it (e.g. one run beside the GPU tests) skips the minutes the peer's autotuning spends compiling."""
    for shape in shapes:
        inputs = make_inputs(shape)
        for fn in contenders:
            torch.autograd.grad(fn(inputs, shape), list(inputs.leaves.values()), inputs.dy)
        del inputs
        torch.cuda.empty_cache()


def tuned_configs() -> dict[str, list[str]]:
    """The configs autotuning picked for each of our tuned kernels, then every candidate's time (ms) at the
    last shape tuned."""
    from gristmill.kernels.ssd import (
        chunk_scan_bwd_dx, chunk_scan_fwd, group_gradient, score_gradient,
    )  # fmt: skip

    kernels = {
        "output": chunk_scan_fwd._ssd_fwd_kernel_output,
        "bwd_dx": chunk_scan_bwd_dx._ssd_bwd_kernel_dx,
        "score_gradient": score_gradient._ssd_bwd_kernel_score_gradient,
        "group_gradient": group_gradient._ssd_bwd_kernel_group_gradient,
    }

    def describe(config) -> str:
        return f"{config.kwargs} warps={config.num_warps} stages={config.num_stages}"

    def timings(kernel) -> list[str]:
        measured = getattr(kernel, "configs_timings", None) or {}
        return [f"{describe(config)}: {times}" for config, times in measured.items()]

    return {
        name: [describe(config) for config in kernel.cache.values()] + timings(kernel) for name, kernel in kernels.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    parser.add_argument("--out", help="also write the markdown table here")
    parser.add_argument("--profile", action="store_true", help="first print per-kernel times at the main shape, ours and the peer's")
    parser.add_argument("--compile-only", action="store_true", help="only run every contender once per shape, untimed")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("the SSD benchmark needs a CUDA GPU")
    peer = load_peer()
    if args.compile_only:
        compile_kernels([ours] if peer is None else [ours, peer], [SHAPES[name] for name in args.shapes])
        return
    if args.profile:
        print(profile(ours, SHAPES["main"]), flush=True)
        print("\n".join(f"{name}: {config}" for name, config in tuned_configs().items()), flush=True)
        if peer is not None:
            print(profile(peer, SHAPES["main"]), flush=True)
    rows = []
    for name in args.shapes:
        rows.append(run_shape(SHAPES[name], peer))
        report = write_report([  # rewritten after every shape, so a run cut short keeps what it measured
            (
                f"{run_stamp()} · bf16 x/B/C, fp32 dt/A/D, chunk 256, G=1; "
                "median of do_bench; fwd without autograd; peak = max allocated above inputs during fwd+bwd"
            ),
            markdown_table(HEADER, rows),
        ], args.out)  # fmt: skip
        print(markdown_table(HEADER, rows[-1:]), flush=True)
    if args.profile:  # the tuning timings of the last shape, which the profile's listing (main shape) does not show
        print("\n".join(f"{name} at {args.shapes[-1]}: {config}" for name, config in tuned_configs().items()))
    print(report)


if __name__ == "__main__":
    main()
