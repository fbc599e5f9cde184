"""One Mamba2 block against one attention block of the trainer: tokens/s of fwd+bwd in bf16 at seq 2k, 8k, 32k.

The blocks are the trainer's own `MambaBlock` (RMSNorm + Mamba2 mixer: projections, conv, SSD, gate, norm)
and `AttentionBlock` (RMSNorm + GQA attention with RoPE + RMSNorm + SwiGLU MLP), built from one model preset
(default hybrid_350m: d_model 1024, 16 query / 4 kv heads of 64, SSM d_state 128, head dim 64, chunk 256).
Attention runs twice: through our Triton varlen kernel (the trainer's CUDA path) and through SDPA with the
block-diagonal mask (the trainer's reference path). Each step holds about 64k tokens: rows x seq.

Layouts: `packed` fills each row with documents of log-uniform length from 1 token to the row length (as
bench.ssd), `whole` puts one document per row (attention's worst case at that length).

Run on the GPU from the repository root:
    source bench/gpu_env.sh && python -m bench.block_throughput --out $OUT/block.md
"""

import argparse
import contextlib
import math
import random
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from unittest import mock

import torch
from torch import nn

from bench.harness import markdown_table, peak_memory_mb, run_stamp, time_ms, write_report
from bench.ssd import row_document_lengths
from gristmill.kernels.attention.rotary_qkv import rotary_qkv_attention_reference
from gristmill.trainer import ops
from gristmill.trainer.models.model import AttentionBlock, MambaBlock
from gristmill.trainer.models.presets import MODEL_PRESETS
from gristmill.trainer.models.segments import Segments

TOKENS_PER_STEP = 65536
SEQ_LENS = (2048, 8192, 32768)
LAYOUTS = ("packed", "whole")


@dataclass(frozen=True)
class Contender:
    name: str
    build: Callable[[], nn.Module]
    context: Callable[[], contextlib.AbstractContextManager]


def sdpa_rotary_qkv_attention(
    qkv: torch.Tensor, n_heads: int, n_kv_heads: int, theta: float, segments: Segments
) -> torch.Tensor:
    """`ops.rotary_qkv_attention` in plain PyTorch (RoPE out of place, SDPA with a block-diagonal mask), for the
    SDPA attention row."""
    return rotary_qkv_attention_reference(
        qkv, segments.position_ids, segments.cu_seqlens, segments.max_seqlen,
        n_heads=n_heads, n_kv_heads=n_kv_heads, theta=theta, rows=segments.rows,
    )


def contenders(preset: str) -> list[Contender]:
    cfg = MODEL_PRESETS[preset]()
    return [
        Contender("mamba2", lambda: MambaBlock(cfg), contextlib.nullcontext),
        Contender("attention (ours)", lambda: AttentionBlock(cfg), contextlib.nullcontext),
        Contender(
            "attention (SDPA)",
            lambda: AttentionBlock(cfg),
            lambda: mock.patch.object(ops, "rotary_qkv_attention", sdpa_rotary_qkv_attention),
        ),
    ]


def document_lengths(seqlen: int, rows: int, layout: str, rng: random.Random) -> list[int]:
    if layout == "whole":
        return [seqlen] * rows
    return [n for _ in range(rows) for n in row_document_lengths(seqlen, rng)]


def make_segments(lengths: list[int], rows: int, device: torch.device) -> Segments:
    """The packer's layout (`trainer.packing.collate`) for documents that already fill `rows` rows exactly."""
    cu_seqlens = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int32)
    starts = torch.repeat_interleave(cu_seqlens[:-1].long(), torch.tensor(lengths))
    position_ids = torch.arange(int(cu_seqlens[-1])) - starts
    return Segments(cu_seqlens.to(device), position_ids.to(device), max(lengths), rows)


def fwd_bwd_step(block: nn.Module, x: torch.Tensor, segments: Segments, dy: torch.Tensor) -> Callable[[], object]:
    """A bf16 autocast forward and the backward to the input and every weight, as a training step runs them."""
    leaves = [x, *block.parameters()]

    def step() -> tuple[torch.Tensor, ...]:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out, _ = block(x, segments)
        return torch.autograd.grad(out, leaves, dy)

    return step


def measure(contender: Contender, segments: Segments, d_model: int) -> tuple[float, float]:
    """fwd+bwd milliseconds (median) and peak MiB above the inputs; NaN for both when it runs out of memory."""
    torch.manual_seed(0)
    block = contender.build().cuda()
    tokens = int(segments.cu_seqlens[-1])
    x = torch.randn(tokens, d_model, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    dy = torch.randn_like(x)
    ms = memory = float("nan")
    try:
        with contender.context():
            step = fwd_bwd_step(block, x, segments, dy)
            step()
            ms, memory = time_ms(step), peak_memory_mb(step)
    except torch.OutOfMemoryError:  # SDPA's masked path can fall back to materializing rows x L x L scores
        print(f"{contender.name} skipped at {segments.rows} rows of {tokens // segments.rows}: out of memory", flush=True)
    del block, x, dy
    torch.cuda.empty_cache()
    return ms, memory


def crossover(seq_lens: list[int], ratios: list[float]) -> str:
    """Where the Mamba2/attention tokens/s ratio passes 1, interpolated in log(seq) between measured lengths."""
    faster = ["n/a" if math.isnan(r) else "mamba2" if r > 1 else "attention" for r in ratios]
    at = ", ".join(f"{n // 1024}k: {name} ({r:.2f}x)" for n, name, r in zip(seq_lens, faster, ratios))
    for (n0, r0), (n1, r1) in zip(zip(seq_lens, ratios), zip(seq_lens[1:], ratios[1:])):
        if (r0 - 1) * (r1 - 1) < 0:
            weight = math.log(r0) / (math.log(r0) - math.log(r1))
            cross = n0 * (n1 / n0) ** weight
            return f"{at}; they cross near seq {cross / 1024:.1f}k (between {n0 // 1024}k and {n1 // 1024}k)"
    return f"{at}; no crossing between {seq_lens[0] // 1024}k and {seq_lens[-1] // 1024}k"


def runs(layouts: list[str], seq_lens: list[int]) -> Iterator[tuple[str, int, int, Segments]]:
    rng = random.Random(0)
    for layout in layouts:
        for seqlen in seq_lens:
            rows = max(1, TOKENS_PER_STEP // seqlen)
            lengths = document_lengths(seqlen, rows, layout, rng)
            yield layout, seqlen, len(lengths), make_segments(lengths, rows, torch.device("cuda"))


HEADER = [
    "layout", "seq", "rows x seq", "docs", "mamba2 tok/s", "attn ours tok/s", "attn SDPA tok/s",
    "mamba2/attn ours", "mamba2/attn SDPA", "mamba2 MiB", "attn ours MiB", "attn SDPA MiB",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="hybrid_350m", choices=list(MODEL_PRESETS))
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--seq-lens", nargs="+", type=int, default=list(SEQ_LENS))
    parser.add_argument("--out", help="also write the markdown report here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("the block throughput benchmark needs a CUDA GPU")
    cfg = MODEL_PRESETS[args.preset]()
    blocks = contenders(args.preset)
    params = {c.name: sum(p.numel() for p in c.build().parameters()) / 1e6 for c in blocks[:2]}
    title = (
        f"{run_stamp()} · one block of {args.preset} (d_model {cfg.d_model}; mamba2 {params['mamba2']:.1f}M params, "
        f"attention + MLP {params['attention (ours)']:.1f}M) · fwd+bwd, bf16 autocast, ~{TOKENS_PER_STEP} tokens "
        "per step; tok/s = tokens / median step time; ratio > 1: the Mamba2 block is faster"
    )
    rows, summary = [], []
    for layout, seqlen, docs, segments in runs(args.layouts, args.seq_lens):
        ms, memory = zip(*(measure(c, segments, cfg.d_model) for c in blocks))
        tokens = int(segments.cu_seqlens[-1])
        speed = [tokens / t * 1e3 for t in ms]
        rows.append([
            layout, seqlen, f"{segments.rows}x{seqlen}", docs, *(f"{s:,.0f}" for s in speed),
            speed[0] / speed[1], speed[0] / speed[2], *memory,
        ])  # fmt: skip
        print(markdown_table(HEADER, rows[-1:]), flush=True)
        done = [row for row in rows if row[0] == layout]
        summary = [line for line in summary if not line.startswith(f"- {layout}")]
        summary.append(f"- {layout}, vs our attention: {crossover([r[1] for r in done], [r[7] for r in done])}")
        summary.append(f"- {layout}, vs SDPA attention: {crossover([r[1] for r in done], [r[8] for r in done])}")
        report = write_report([title, "", markdown_table(HEADER, rows), "", *summary], args.out)
    print(report)


if __name__ == "__main__":
    main()
