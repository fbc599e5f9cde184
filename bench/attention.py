"""Varlen flash attention vs PyTorch SDPA: flash and cuDNN backends on plain causal rows, padded SDPA on packed documents.

Run on the GPU from the repository root, after the attention tests pass:
    source bench/gpu_env.sh && python -m pytest tests/kernels/test_attention.py -q -x \
        && python -m bench.attention --out $OUT/attention.md
TFLOP/s count causal attention as half the full square; fwd+bwd counts 3.5x the forward (2 + 5 matmuls).
"""

import argparse
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.harness import git_revision, machine, markdown_table, time_ms, today, write_report
from gristmill.kernels.attention import flash_attention_varlen
from gristmill.kernels.testing import relative_error

DEVICE = "cuda"
HEADS, HEAD_DIM, DTYPE = 16, 128, torch.bfloat16
ROW_TOKENS = 8192
GATE_TOLERANCE = 1e-2
Attention = Callable[[], torch.Tensor]


@dataclass(frozen=True)
class Contender:
    """One way to run a case: the call, its differentiable inputs, its output gradient, and a map from its
    output layout back to packed `[T, H, D]` (for the correctness gate)."""

    name: str
    run: Attention
    leaves: list[torch.Tensor]
    grad_out: torch.Tensor
    to_packed: Callable[[torch.Tensor], torch.Tensor] = lambda x: x

    def result(self) -> list[torch.Tensor]:
        out = self.run()
        grads = torch.autograd.grad(out, self.leaves, self.grad_out)
        return [self.to_packed(x) for x in (out, *grads)]


@dataclass(frozen=True)
class Packed:
    """q, k, v `[T, H, D]` leaves of a batch of documents, their offsets, and a fixed output gradient."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    grad_out: torch.Tensor
    doc_lengths: list[int]
    cu_seqlens: torch.Tensor

    def ours(self) -> Contender:
        def run() -> torch.Tensor:
            return flash_attention_varlen(self.q, self.k, self.v, self.cu_seqlens, max(self.doc_lengths))

        return Contender("ours", run, [self.q, self.k, self.v], self.grad_out)

    def fwd_flops(self) -> float:
        return sum(4 * length * length * HEAD_DIM * HEADS / 2 for length in self.doc_lengths)


def make_packed(doc_lengths: list[int]) -> Packed:
    total = sum(doc_lengths)
    q, k, v = (torch.randn(total, HEADS, HEAD_DIM, device=DEVICE, dtype=DTYPE).requires_grad_() for _ in range(3))
    offsets = [0]
    for length in doc_lengths:
        offsets.append(offsets[-1] + length)
    cu_seqlens = torch.tensor(offsets, dtype=torch.int32, device=DEVICE)
    return Packed(q, k, v, torch.randn_like(q), doc_lengths, cu_seqlens)


def mixed_rows(rows: int, seed: int = 0) -> list[int]:
    """Log-uniform document lengths from 32 to a full row; each row ends on a document end, as the packer does."""
    rng = random.Random(seed)
    lengths = []
    for _ in range(rows):
        left = ROW_TOKENS
        while left > 0:
            length = min(left, int(math.exp(rng.uniform(math.log(32), math.log(ROW_TOKENS)))))
            lengths.append(length)
            left -= length
    return lengths


def sdpa_rows(packed: Packed, seqlen: int, name: str, backend: SDPBackend) -> Contender:
    """SDPA on the same tokens viewed as [B, H, L, D] rows (every document is one full row)."""

    def as_rows(x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, seqlen, HEADS, HEAD_DIM).transpose(1, 2)

    def run() -> torch.Tensor:
        with sdpa_kernel(backend):
            out = F.scaled_dot_product_attention(as_rows(packed.q), as_rows(packed.k), as_rows(packed.v), is_causal=True)
        return out.transpose(1, 2).reshape(packed.q.shape)

    return Contender(name, run, [packed.q, packed.k, packed.v], packed.grad_out)


def sdpa_padded(packed: Packed) -> Contender:
    """SDPA flash on each document padded to the longest (padding and unpadding left out of the timing)."""
    docs, longest = len(packed.doc_lengths), max(packed.doc_lengths)
    positions = torch.cat([doc * longest + torch.arange(n, device=DEVICE) for doc, n in enumerate(packed.doc_lengths)])

    def pad(x: torch.Tensor) -> torch.Tensor:
        padded = x.new_zeros(docs * longest, HEADS, HEAD_DIM)
        padded[positions] = x.detach()
        return padded.view(docs, longest, HEADS, HEAD_DIM)

    leaves = [pad(x).requires_grad_() for x in (packed.q, packed.k, packed.v)]

    def run() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in leaves), is_causal=True).transpose(1, 2)

    def to_packed(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(docs * longest, HEADS, HEAD_DIM)[positions]

    return Contender("sdpa flash padded", run, leaves, pad(packed.grad_out), to_packed)


def gate(case: str, ours: Contender, peer: Contender) -> None:
    """Refuses to time a case whose output or gradients disagree with the peer on the same input."""
    errors = [relative_error(a, b) for a, b in zip(ours.result(), peer.result())]
    print(f"gate {case} vs {peer.name}: relative error out dq dk dv " + " ".join(f"{e:.1e}" for e in errors))
    if not all(e <= GATE_TOLERANCE for e in errors):
        sys.exit(f"gate {case} failed: not reporting the speed of a wrong result")


def time_case(case: str, flops: float, contenders: list[Contender]) -> list[list[object]]:
    """Median ms of forward and of forward+backward for each contender; the speedup columns are ours over it."""
    times = {}
    for contender in contenders:
        forward_ms = time_ms(contender.run)
        both_ms = time_ms(lambda: torch.autograd.grad(contender.run(), contender.leaves, contender.grad_out))
        times[contender.name] = (forward_ms, both_ms)
    ours_fwd, ours_both = times["ours"]
    return [
        [case, name, fwd, flops / fwd / 1e9, both, 3.5 * flops / both / 1e9, fwd / ours_fwd, both / ours_both]
        for name, (fwd, both) in times.items()
    ]


def bench_plain(batch: int, seqlen: int) -> list[list[object]]:
    packed = make_packed([seqlen] * batch)
    flash = sdpa_rows(packed, seqlen, "sdpa flash", SDPBackend.FLASH_ATTENTION)
    cudnn = sdpa_rows(packed, seqlen, "sdpa cudnn", SDPBackend.CUDNN_ATTENTION)
    case = f"causal B{batch} L{seqlen}"
    gate(case, packed.ours(), flash)
    contenders = [packed.ours(), flash]
    try:
        cudnn.run()
        contenders.append(cudnn)
    except RuntimeError as error:
        print(f"{case}: sdpa cudnn unavailable ({str(error).splitlines()[0]})")
    return time_case(case, packed.fwd_flops(), contenders)


def bench_packed(rows: int) -> tuple[list[list[object]], str]:
    packed = make_packed(mixed_rows(rows))
    padded = sdpa_padded(packed)
    docs, longest = len(packed.doc_lengths), max(packed.doc_lengths)
    case = f"packed {rows}x{ROW_TOKENS} ({docs} docs)"
    gate(case, packed.ours(), padded)
    table = time_case(case, packed.fwd_flops(), [packed.ours(), padded])
    saved = 1 - sum(packed.doc_lengths) / (docs * longest)
    needed = 1 / (1 - saved)
    note = (f"{case}: padding every document to {longest} tokens makes {saved:.0%} of the tokens padding; speedup needed "
            f"over padded {needed:.2f}x, measured fwd {table[1][6]:.2f}x, fwd+bwd {table[1][7]:.2f}x")
    return table, note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown report here")
    args = parser.parse_args()
    torch.manual_seed(0)
    table = bench_plain(8, 2048) + bench_plain(2, 8192)
    packed_rows, note = bench_packed(4)
    header = ["case", "method", "fwd ms", "fwd TFLOP/s", "fwd+bwd ms", "fwd+bwd TFLOP/s",
              "ours fwd speedup", "ours fwd+bwd speedup"]
    report = write_report([
        f"## attention ({today()}, {machine()}, git {git_revision()})",
        f"H={HEADS} D={HEAD_DIM} {str(DTYPE).removeprefix('torch.')}; command: python -m bench.attention",
        "",
        markdown_table(header, table + packed_rows),
        "",
        note,
    ], args.out)
    print(report)


if __name__ == "__main__":
    main()
