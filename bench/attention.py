"""Varlen flash attention vs PyTorch SDPA: flash and cuDNN backends on plain causal rows, padded SDPA on packed documents.

Run on the GPU from the repository root, after the attention tests pass:
    source bench/gpu_env.sh && python -m pytest tests/kernels/test_attention.py -q -x \
        && python -m bench.attention --out $OUT/attention.md --profile --sweep
TFLOP/s count causal attention as half the full square; fwd+bwd counts 3.5x the forward (2 + 5 matmuls).
--profile prints each kernel's share of our fwd+bwd (torch profiler); --sweep times each kernel's tile
candidates one at a time (as the whole forward or backward call), to re-check kernels/attention/configs.py.
--shape model runs only the gate (against the fp32 reference), the profile and the sweep, at the shape the
trainer's 350M presets call attention with: head dim 64, 16 q and 4 kv heads, 8 packed rows of 4096 tokens; and
the way the trainer calls it, rotary_qkv_attention (RoPE in place on one fused qkv, then attention), fwd+bwd
against flash_attention_varlen on the same tokens, with its own profile under --profile.
"""

import argparse
import math
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import triton
from torch.autograd import DeviceType
from torch.nn.attention import SDPBackend, sdpa_kernel

from bench.harness import git_revision, machine, markdown_table, time_ms, today, write_report
from gristmill.kernels.attention import attention_reference, flash_attention_varlen
from gristmill.kernels.attention.backward import _attention_bwd_dkdv_kernel, _attention_bwd_dq_kernel, attention_backward
from gristmill.kernels.attention.forward import _attention_fwd_kernel, attention_forward
from gristmill.kernels.attention.rotary_qkv import rotary_qkv_attention, split_qkv
from gristmill.kernels.fused import apply_rope_reference
from gristmill.kernels.testing import relative_error

DEVICE = "cuda"
DTYPE = torch.bfloat16
GATE_TOLERANCE = 1e-2
# q and k round to bf16 once more after RoPE: tests/kernels/test_rotary_qkv.py sees dq, dk near 1.05e-2 and uses 1.5e-2
ROTARY_GATE_TOLERANCE = 1.5e-2
Attention = Callable[[], torch.Tensor]
# Matmuls of D-deep products over the visible (query, key) pairs that each kernel does.
KERNEL_MATMULS = {"_attention_fwd_kernel": 2, "_attention_bwd_dq_kernel": 3, "_attention_bwd_dkdv_kernel": 4}
AUTOTUNED = {"forward": _attention_fwd_kernel, "dk dv": _attention_bwd_dkdv_kernel, "dq": _attention_bwd_dq_kernel}


@dataclass(frozen=True)
class Shape:
    """Heads, head dim and packed row length of one benchmark setting."""

    name: str
    heads_q: int
    heads_kv: int
    head_dim: int
    row_tokens: int


ISSUE7 = Shape("d128", heads_q=16, heads_kv=16, head_dim=128, row_tokens=8192)
# transformer_350m and hybrid_350m (trainer/models/presets.py) as bench/end_to_end.py trains them
MODEL = Shape("model", heads_q=16, heads_kv=4, head_dim=64, row_tokens=4096)
MODEL_ROWS = 8
SHAPES = {shape.name: shape for shape in (ISSUE7, MODEL)}


def _tiles(kernel: triton.runtime.Autotuner, *tiles: tuple[int, int, int, int]) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, warps, stages) candidates carrying the kernel's pre-hook, which sizes its descriptors, and
    the register cap its autotune list gives tiles of that many warps (configs.py)."""

    def register_cap(warps: int) -> int | None:
        return next((config.maxnreg for config in kernel.configs if config.num_warps == warps), None)

    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages,
                          pre_hook=kernel.configs[0].pre_hook, maxnreg=register_cap(warps))
            for bm, bn, warps, stages in tiles]


# Supersets of the autotune lists in kernels/attention/configs.py, per shape. At D128 forward 64x64 w4 s3 was the
# fastest forward tile at L2048 in session 4 (0.328 ms) but has not run the GPU tests yet, so it is not in the
# autotune list. At D64 a tile needs half the registers and shared memory, so larger tiles were tried too (none
# won on packed rows, 2026-11-26), and now deeper pipelines and narrower tiles around the winners.
SWEEP_CANDIDATES = {
    "d128": {
        "forward": _tiles(_attention_fwd_kernel, (128, 64, 8, 3), (128, 64, 8, 4), (64, 64, 4, 2), (64, 64, 4, 3)),
        "dk dv": _tiles(_attention_bwd_dkdv_kernel, (64, 64, 4, 2), (32, 64, 4, 3), (64, 64, 4, 3), (64, 128, 8, 2)),
        "dq": _tiles(_attention_bwd_dq_kernel, (128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2), (64, 64, 4, 2)),
    },
    "model": {
        "forward": _tiles(_attention_fwd_kernel, (128, 64, 8, 3), (128, 64, 8, 4), (64, 64, 4, 2), (64, 64, 4, 3),
                          (64, 64, 4, 4), (64, 32, 4, 3), (32, 64, 4, 3), (128, 64, 4, 3), (64, 128, 4, 3)),
        "dk dv": _tiles(_attention_bwd_dkdv_kernel, (64, 64, 4, 2), (32, 64, 4, 3), (64, 64, 4, 3), (64, 128, 8, 2),
                        (64, 64, 4, 4), (64, 64, 8, 3), (128, 64, 8, 3), (128, 64, 4, 3), (64, 32, 4, 3),
                        (32, 32, 4, 3), (64, 128, 8, 3)),
        "dq": _tiles(_attention_bwd_dq_kernel, (128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2), (64, 64, 4, 2),
                     (64, 64, 4, 3), (64, 32, 4, 3), (128, 64, 4, 3), (64, 128, 4, 3), (64, 128, 4, 4)),
    },
}


@dataclass(frozen=True)
class Contender:
    """One way to run a case: the call, its differentiable inputs, its output gradient, a map from its output
    layout back to packed `[T, H, D]` and one from a leaf's gradient to the gradients of q, k, v it holds (for the
    correctness gate)."""

    name: str
    run: Attention
    leaves: list[torch.Tensor]
    grad_out: torch.Tensor
    to_packed: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    grad_parts: Callable[[torch.Tensor], tuple[torch.Tensor, ...]] = lambda x: (x,)

    def result(self) -> list[torch.Tensor]:
        out = self.run()
        grads = torch.autograd.grad(out, self.leaves, self.grad_out)
        return [self.to_packed(x) for x in (out, *(part for grad in grads for part in self.grad_parts(grad)))]


@dataclass(frozen=True)
class Packed:
    """q `[T, Hq, D]`, k and v `[T, Hkv, D]` leaves of a batch of documents, their offsets, the max_seqlen passed
    to the kernels, and a fixed output gradient."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    grad_out: torch.Tensor
    doc_lengths: list[int]
    cu_seqlens: torch.Tensor
    max_seqlen: int

    def ours(self) -> Contender:
        def run() -> torch.Tensor:
            return flash_attention_varlen(self.q, self.k, self.v, self.cu_seqlens, self.max_seqlen)

        return Contender("ours", run, [self.q, self.k, self.v], self.grad_out)

    def fwd_flops(self) -> float:
        heads, head_dim = self.q.shape[1:]
        return sum(4 * length * length * head_dim * heads / 2 for length in self.doc_lengths)


def make_packed(doc_lengths: list[int], shape: Shape, max_seqlen: int | None = None) -> Packed:
    """Random inputs of `shape`; max_seqlen defaults to the longest document (the trainer passes the row length)."""
    total = sum(doc_lengths)
    q, k, v = (torch.randn(total, heads, shape.head_dim, device=DEVICE, dtype=DTYPE).requires_grad_()
               for heads in (shape.heads_q, shape.heads_kv, shape.heads_kv))
    offsets = [0]
    for length in doc_lengths:
        offsets.append(offsets[-1] + length)
    cu_seqlens = torch.tensor(offsets, dtype=torch.int32, device=DEVICE)
    return Packed(q, k, v, torch.randn_like(q), doc_lengths, cu_seqlens, max_seqlen or max(doc_lengths))


def mixed_rows(rows: int, row_tokens: int, seed: int = 0) -> list[int]:
    """Log-uniform document lengths from 32 to a full row; each row ends on a document end, as the packer does."""
    rng = random.Random(seed)
    lengths = []
    for _ in range(rows):
        left = row_tokens
        while left > 0:
            length = min(left, int(math.exp(rng.uniform(math.log(32), math.log(row_tokens)))))
            lengths.append(length)
            left -= length
    return lengths


def sdpa_rows(packed: Packed, seqlen: int, name: str, backend: SDPBackend) -> Contender:
    """SDPA on the same tokens viewed as [B, H, L, D] rows (every document is one full row)."""

    def as_rows(x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, seqlen, *x.shape[1:]).transpose(1, 2)

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
        padded = x.new_zeros(docs * longest, *x.shape[1:])
        padded[positions] = x.detach()
        return padded.view(docs, longest, *x.shape[1:])

    leaves = [pad(x).requires_grad_() for x in (packed.q, packed.k, packed.v)]

    def run() -> torch.Tensor:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            return F.scaled_dot_product_attention(*(x.transpose(1, 2) for x in leaves), is_causal=True).transpose(1, 2)

    def to_packed(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(docs * longest, *x.shape[2:])[positions]

    return Contender("sdpa flash padded", run, leaves, pad(packed.grad_out), to_packed)


def reference(packed: Packed) -> Contender:
    """The fp32 oracle on copies of the same inputs: the gate where SDPA's row layouts do not apply (GQA)."""
    leaves = [x.detach().float().requires_grad_() for x in (packed.q, packed.k, packed.v)]

    def run() -> torch.Tensor:
        return attention_reference(*leaves, packed.cu_seqlens, packed.max_seqlen)

    return Contender("reference fp32", run, leaves, packed.grad_out.float())


def rotary_contenders(packed: Packed) -> tuple[Contender, Contender]:
    """rotary_qkv_attention on packed's q, k, v laid side by side as one fused projection `[T, (Hq + 2 Hkv) D]`,
    and the fp32 oracle (RoPE reference, then attention per document) on a copy. qkv is rotated in place, so each
    call starts from a clone of the leaf, as the trainer's starts from a fresh projection output (the clone's copy is
    in the timing; its backward adds nothing)."""
    heads_q, heads_kv = packed.q.shape[1], packed.k.shape[1]
    leaf = torch.cat([x.detach().flatten(1) for x in (packed.q, packed.k, packed.v)], dim=1).requires_grad_()
    position_ids = torch.cat([torch.arange(n, device=DEVICE, dtype=torch.int32) for n in packed.doc_lengths])
    settings = dict(n_heads=heads_q, n_kv_heads=heads_kv)

    def run() -> torch.Tensor:
        return rotary_qkv_attention(leaf.clone(), position_ids, packed.cu_seqlens, packed.max_seqlen, **settings)

    ref_leaf = leaf.detach().float().requires_grad_()

    def run_reference() -> torch.Tensor:
        q, k, v = split_qkv(ref_leaf, heads_q, heads_kv)
        q, k = apply_rope_reference(q, k, position_ids)
        return attention_reference(q, k, v, packed.cu_seqlens, packed.max_seqlen)

    def per_input(dqkv: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return split_qkv(dqkv, heads_q, heads_kv)

    ours = Contender("rotary_qkv_attention", run, [leaf], packed.grad_out, grad_parts=per_input)
    reference_fp32 = Contender("reference fp32", run_reference, [ref_leaf], packed.grad_out.float(), grad_parts=per_input)
    return ours, reference_fp32


def time_rotary(case: str, packed: Packed, rotary: Contender) -> list[list[object]]:
    """Median ms of forward and forward+backward of rotary_qkv_attention against flash_attention_varlen alone on the
    same tokens: the difference is what RoPE and the fused layout cost."""
    rows = []
    for contender in (packed.ours(), rotary):
        forward_ms = time_ms(contender.run)
        both_ms = time_ms(lambda: torch.autograd.grad(contender.run(), contender.leaves, contender.grad_out))
        rows.append([case, contender.name, forward_ms, both_ms])
    plain_both = rows[0][3]
    return [row + [row[3] - plain_both] for row in rows]


def gate(case: str, ours: Contender, peer: Contender, tolerance: float = GATE_TOLERANCE) -> None:
    """Refuses to time a case whose output or gradients disagree with the peer on the same input."""
    errors = [relative_error(a, b) for a, b in zip(ours.result(), peer.result())]
    print(f"gate {case} vs {peer.name}: relative error out dq dk dv " + " ".join(f"{e:.1e}" for e in errors))
    if not all(e <= tolerance for e in errors):
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
    packed = make_packed([seqlen] * batch, ISSUE7)
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
    packed = make_packed(mixed_rows(rows, ISSUE7.row_tokens), ISSUE7)
    padded = sdpa_padded(packed)
    docs, longest = len(packed.doc_lengths), max(packed.doc_lengths)
    case = f"packed {rows}x{ISSUE7.row_tokens} ({docs} docs)"
    gate(case, packed.ours(), padded)
    table = time_case(case, packed.fwd_flops(), [packed.ours(), padded])
    saved = 1 - sum(packed.doc_lengths) / (docs * longest)
    needed = 1 / (1 - saved)
    note = (f"{case}: padding every document to {longest} tokens makes {saved:.0%} of the tokens padding; speedup needed "
            f"over padded {needed:.2f}x, measured fwd {table[1][6]:.2f}x, fwd+bwd {table[1][7]:.2f}x")
    return table, note


def describe(config: triton.Config) -> str:
    registers = f" r{config.maxnreg}" if getattr(config, "maxnreg", None) else ""
    return f"BM{config.kwargs['BLOCK_M']} BN{config.kwargs['BLOCK_N']} w{config.num_warps} s{config.num_stages}{registers}"


def autotune_picks() -> str:
    """Each kernel's tuned tile per autotune key (head dim and flags, rotate-back included, then dtypes)."""
    return "; ".join(f"{name} {key}: {describe(config)}"
                     for name, kernel in AUTOTUNED.items() for key, config in kernel.cache.items())


def profile_kernels(case: str, ours: Contender, fwd_flops: float, steps: int = 5) -> list[list[object]]:
    """GPU time per kernel of a contender's fwd+bwd (torch profiler), with the useful TFLOP/s each one reaches."""
    ours.result()  # compile and autotune before profiling
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
        for _ in range(steps):
            ours.result()
        torch.cuda.synchronize()
    rows = []
    for event in profile.key_averages():
        if event.device_type != DeviceType.CUDA or event.self_device_time_total == 0:
            continue
        ms = event.self_device_time_total / steps / 1e3
        matmuls = KERNEL_MATMULS.get(event.key, 0)
        tflops = matmuls * 2 * fwd_flops / 4 / ms / 1e9 if matmuls else ""
        rows.append([case, event.key[:60], event.count // steps, ms, tflops])
    return sorted(rows, key=lambda row: -row[3])


def sweep_tiles(case: str, packed: Packed, candidates: dict[str, list[triton.Config]]) -> list[list[object]]:
    """Each kernel's candidates one at a time (the other kernels keep their tuned pick), timed against the autotuned
    pick of the configs.py list, with the relative error of the candidate's result against the autotuned one: a
    tile that computes garbage shows up here."""
    q, k, v, grad_out = (x.detach() for x in (packed.q, packed.k, packed.v, packed.grad_out))
    settings = (packed.cu_seqlens, packed.max_seqlen, True, None, q.shape[-1] ** -0.5)
    out, lse = attention_forward(q, k, v, *settings)
    calls = {
        "forward": lambda: attention_forward(q, k, v, *settings)[:1],
        "dk dv": lambda: attention_backward(grad_out, q, k, v, out, lse, *settings)[1:],
        "dq": lambda: attention_backward(grad_out, q, k, v, out, lse, *settings)[:1],
    }
    rows = []
    for name, kernel in AUTOTUNED.items():
        tuned = kernel.configs
        expected = calls[name]()
        tuned_ms = time_ms(calls[name], warmup_ms=25, rep_ms=150)
        rows.append([case, name, f"tuned: {describe(kernel.best_config)}", tuned_ms, 1.0, 0.0])
        print("sweep", *rows[-1], flush=True)
        for config in candidates[name]:
            kernel.configs = [config]
            try:
                error = max(relative_error(a, b) for a, b in zip(calls[name](), expected))
                ms = time_ms(calls[name], warmup_ms=25, rep_ms=150)
            except Exception as failure:  # a tile this GPU cannot compile is reported, not fatal
                error, ms = str(failure).splitlines()[0][:40], float("nan")
            rows.append([case, name, describe(config), ms, ms / tuned_ms, error])
            print("sweep", *rows[-1], flush=True)  # partial results survive a run cut off at its time limit
        kernel.configs = tuned
    return rows


PROFILE_HEADER = ["case", "kernel", "launches", "ms per fwd+bwd", "useful TFLOP/s"]
SWEEP_HEADER = ["case", "kernel", "tiles", "ms (whole fwd or bwd)", "vs tuned", "rel. error vs tuned"]


def shape_line(shape: Shape) -> str:
    return f"Hq={shape.heads_q} Hkv={shape.heads_kv} D={shape.head_dim} {str(DTYPE).removeprefix('torch.')}"


def issue7_report(profile: bool, sweep: bool) -> list[str]:
    """Ours against SDPA at D128 without GQA (the issue-7 targets), then the optional profile and sweep."""
    table = bench_plain(8, 2048) + bench_plain(2, 8192)
    packed_rows, note = bench_packed(4)
    header = ["case", "method", "fwd ms", "fwd TFLOP/s", "fwd+bwd ms", "fwd+bwd TFLOP/s",
              "ours fwd speedup", "ours fwd+bwd speedup"]
    lines = [
        f"{shape_line(ISSUE7)}; command: python -m bench.attention",
        "",
        markdown_table(header, table + packed_rows),
        "",
        note,
        f"autotune picks (first shape tuned): {autotune_picks()}",
    ]
    plain = {f"causal B{batch} L{seqlen}": ([seqlen] * batch) for batch, seqlen in ((8, 2048), (2, 8192))}
    if profile:
        kernels = []
        for case, lengths in plain.items():
            packed = make_packed(lengths, ISSUE7)
            kernels += profile_kernels(case, packed.ours(), packed.fwd_flops())
        lines += ["", markdown_table(PROFILE_HEADER, kernels)]
    if sweep:
        candidates = SWEEP_CANDIDATES[ISSUE7.name]
        swept = [row for case, lengths in plain.items()
                 for row in sweep_tiles(case, make_packed(lengths, ISSUE7), candidates)]
        lines += ["", markdown_table(SWEEP_HEADER, swept)]
    return lines


def model_report(profile: bool, sweep: bool) -> list[str]:
    """The trainer's shape: gated against the fp32 reference (SDPA rows cannot hold GQA), then profile and sweep.
    max_seqlen is the row length, as the trainer passes it, so the launch grid matches training's."""
    packed = make_packed(mixed_rows(MODEL_ROWS, MODEL.row_tokens), MODEL, max_seqlen=MODEL.row_tokens)
    case = f"packed {MODEL_ROWS}x{MODEL.row_tokens} ({len(packed.doc_lengths)} docs)"
    gate(case, packed.ours(), reference(packed))
    rotary, rotary_reference = rotary_contenders(packed)
    gate(f"{case} rotary", rotary, rotary_reference, ROTARY_GATE_TOLERANCE)
    command = "python -m bench.attention --shape model"
    lines = [
        f"{shape_line(MODEL)}, {case}, max_seqlen {packed.max_seqlen}; command: {command}",
        "",
        markdown_table(["case", "method", "fwd ms", "fwd+bwd ms", "fwd+bwd ms over flash_attention_varlen"],
                       time_rotary(case, packed, rotary)),
    ]
    if profile:
        lines += ["", markdown_table(PROFILE_HEADER, profile_kernels(case, packed.ours(), packed.fwd_flops()))]
        lines += ["", markdown_table(PROFILE_HEADER, profile_kernels(f"{case} rotary", rotary, packed.fwd_flops()))]
    lines += ["", f"autotune picks: {autotune_picks()}"]
    if sweep:
        lines += ["", markdown_table(SWEEP_HEADER, sweep_tiles(case, packed, SWEEP_CANDIDATES[MODEL.name]))]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the markdown report here")
    parser.add_argument("--profile", action="store_true", help="per-kernel GPU time of our fwd+bwd")
    parser.add_argument("--sweep", action="store_true", help="time each kernel's tile candidates one by one")
    parser.add_argument("--shape", choices=SHAPES, default=ISSUE7.name,
                        help="d128: against SDPA at D128, 16 heads; model: the 350M presets' D64, 16/4 heads")
    args = parser.parse_args()
    torch.manual_seed(0)
    report = model_report if args.shape == MODEL.name else issue7_report
    lines = [f"## attention ({today()}, {machine()}, git {git_revision()})"] + report(args.profile, args.sweep)
    print(write_report(lines, args.out))


if __name__ == "__main__":
    main()
