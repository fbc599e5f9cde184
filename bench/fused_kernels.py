"""Fused training kernels vs eager PyTorch and torch.compile of the same reference: fwd+bwd time, peak memory.

Run on the GPU from the repository root, after the kernel tests pass:
    source bench/gpu_env.sh && python -m pytest -o addopts="" tests/kernels/test_rms_norm.py ... \
        && python -m bench.fused_kernels --out $OUT/fused.md
`--lce-rows` first times linear + cross-entropy's rows kernel alone, main's launch against the candidates.
`--quack-lce` times our linear + cross-entropy against quack-kernels' scaled-exp pipeline (the trainer's choice on
Hopper where quack is installed) at the models' head and the issue's 128k vocab, both against a float32 reference,
then stops.
`--quack-dgrad` times the MLP's dA GEMM with the SwiGLU gradient in its epilogue: quack's `gemm_dgated` (which also
stores the activation it recomputes) against ours (kernels/fused/swiglu_mlp/quack_epilogue.py: d(gate, up) only),
then stops.
`--passes ROOT...` times the bandwidth-bound kernels (the norms, the mixer's conv) alone at the trainer's shapes,
the same files of other checkouts (main's first) against this tree's, and `--sweep` adds each launch candidate of
this tree's.
"""

import argparse
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import ModuleType

import torch
import triton
from triton.runtime.errors import OutOfResources

from bench.harness import markdown_table, peak_memory_mb, run_stamp, time_ms, write_report
from gristmill.kernels import fused
from gristmill.kernels.fused.embedding import embedding, embedding_reference
from gristmill.kernels.fused.linear_cross_entropy.reference import cross_entropy_reference
from gristmill.kernels.fused.linear_cross_entropy.rows_kernel import RowsLaunch, cross_entropy_rows
from gristmill.kernels.fused.linear_cross_entropy.triton_fwd_bwd import default_chunk_size
from gristmill.kernels.fused.rms_norm import gated_rms_norm_reference, rms_norm_reference
from gristmill.kernels.fused.swiglu_mlp.interleave import interleave_gate_up, interleave_rows_reference
from gristmill.kernels.ssd import causal_conv1d_reference
from gristmill.kernels.ssd.documents import stream_doc_start
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


def embedding_case(tokens: int = 65536, vocab: int = 50304, dim: int = 1024, zipf: bool = False) -> Case:
    """The models' token lookup into their bf16 stream: a float32 table and a 16-row step's ids, uniform at random
    (as bench/end_to_end.py's synthetic corpus draws them) or, with `zipf`, by rank with probability ~ 1/rank, as
    words in text (the most frequent id then takes ~9% of the tokens)."""
    (weight,) = _leaves(torch.randn(vocab, dim, device=DEVICE))
    if zipf:
        ranks = torch.arange(1, vocab + 1, device=DEVICE, dtype=torch.float64)
        ids = torch.multinomial(1 / ranks, tokens, replacement=True)
    else:
        ids = torch.randint(0, vocab, (tokens,), device=DEVICE)
    dy = torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16)

    def step(fn):
        y = fn(ids, weight, torch.bfloat16)
        return (y, *torch.autograd.grad(y, (weight,), dy))

    # fwd reads the float32 rows, writes bf16; bwd reads dy, writes the float32 table gradient
    return Case("embedding", f"T{tokens} V{vocab} D{dim} f32 table, bf16 out, {'zipf' if zipf else 'uniform'} ids",
                embedding, embedding_reference, step,
                min_bytes=tokens * dim * (4 + 2 + 2) + vocab * dim * 4)


def gate_up_interleave_case(hidden: int = 2752, dim: int = 1024) -> Case:
    """The MLP's float32 [gate | up] weight into quack's interleaved bf16 rows, and the gradient back (once per
    layer and step; transformer_350m's shape)."""
    (weight,) = _leaves(torch.randn(2 * hidden, dim, device=DEVICE))
    dy = torch.randn(2 * hidden, dim, device=DEVICE, dtype=torch.bfloat16)

    def step(fn):
        y = fn(weight, torch.bfloat16)
        return (y, *torch.autograd.grad(y, (weight,), dy))

    def one_copy(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:  # copy_ between permuted views, as before
        return interleave_rows_reference(w, dtype, interleave=True)

    # fwd reads float32, writes bf16; bwd reads bf16, writes float32
    return Case("gate_up_interleave", f"F{hidden} D{dim} f32 -> bf16", interleave_gate_up, one_copy, step,
                min_bytes=2 * weight.numel() * (4 + 2))


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


QUACK_LCE_SHAPES = ((65536, 1024, 50304), (8192, 4096, 128256))  # the 350m models' 16-row step; the issue's 128k
QUACK_LCE_HEADER = ["shape", "ours ms", "quack ms", "ours / quack", "ours MiB", "quack MiB",
                    "ours rel err loss / dh / dW", "quack rel err loss / dh / dW"]


def _float32_loss_and_grads(hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> list[torch.Tensor]:
    """Summed loss and its gradients in float32, 4096 rows of logits at a time (the full logits do not fit)."""
    hidden32, weight32 = (t.detach().float().requires_grad_() for t in (hidden, weight))
    total = torch.zeros((), device=DEVICE)
    for start in range(0, hidden.shape[0], 4096):
        part = fused.linear_cross_entropy_reference(hidden32[start:start + 4096], weight32, labels[start:start + 4096],
                                                    reduction="sum")
        part.backward()
        total += part.detach()
    return [total, hidden32.grad, weight32.grad]


def measure_quack_lce(tokens: int, dim: int, vocab: int) -> list[object]:
    """Ours and quack's summed-loss fwd+bwd on one bf16 input, with their errors against float32."""
    from gristmill.kernels.fused.linear_cross_entropy.quack_lce import (
        quack_linear_cross_entropy, quack_linear_cross_entropy_unavailable_reason,
    )

    hidden = torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16)
    weight = torch.randn(vocab, dim, device=DEVICE, dtype=torch.bfloat16) / dim**0.5
    labels = torch.randint(0, vocab, (tokens,), device=DEVICE)
    labels[::17] = -100
    hidden, weight = _leaves(hidden, weight)
    reason = quack_linear_cross_entropy_unavailable_reason(hidden, weight)
    if reason is not None:
        sys.exit(f"--quack-lce: quack's loss cannot run here: {reason}")
    impls = {
        "ours": partial(fused.linear_cross_entropy, ignore_index=-100, reduction="sum"),
        "quack": partial(quack_linear_cross_entropy, ignore_index=-100),
    }

    def step(fn: Callable) -> list[torch.Tensor]:
        loss = fn(hidden, weight, labels)
        return [loss.detach(), *torch.autograd.grad(loss, (hidden, weight))]

    reference = _float32_loss_and_grads(hidden, weight, labels)
    errors = {label: " / ".join(f"{relative_error(out.float(), ref):.1e}" for out, ref in zip(step(fn), reference))
              for label, fn in impls.items()}  # also compiles quack's kernels before the timing
    del reference
    times = {label: time_ms(lambda fn=fn: step(fn)) for label, fn in impls.items()}
    memory = {label: peak_memory_mb(lambda fn=fn: step(fn)) for label, fn in impls.items()}
    return [f"N{tokens} D{dim} V{vocab} bf16", times["ours"], times["quack"], times["ours"] / times["quack"],
            memory["ours"], memory["quack"], errors["ours"], errors["quack"]]


QUACK_DGRAD_SHAPES = ((65536, 1024, 2752),)  # (T, d, F): the 350m models' 16-row step
QUACK_DGRAD_HEADER = ["shape", "quack gemm_dgated ms", "ours (no activation store) ms", "quack / ours",
                      "ours TFLOP/s", "max abs diff d(gate, up)"]


def measure_quack_dgrad(tokens: int, dim: int, hidden: int) -> list[object]:
    """dout [T, d] @ w_down [d, F] -> d(preact) [T, 2F] through the SwiGLU gradient, both epilogues."""
    from gristmill.kernels.fused.swiglu_mlp.quack_mlp import _quack_gemms

    gemms, reason = _quack_gemms()
    if gemms is None:
        sys.exit(f"--quack-dgrad: quack cannot be imported: {reason}")
    from quack.gemm_interface import gemm_dgated

    dout = torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16)
    w_down = torch.randn(dim, hidden, device=DEVICE, dtype=torch.bfloat16) / hidden**0.5
    preact = torch.randn(tokens, 2 * hidden, device=DEVICE, dtype=torch.bfloat16)
    ours = torch.empty_like(preact)

    def quack_step() -> torch.Tensor:
        return gemm_dgated(dout, w_down, preact, activation="swiglu", dynamic_scheduler=True)[0]

    def ours_step() -> torch.Tensor:
        gemms.swiglu_grad(dout, w_down, preact, out={"D": ours}, dynamic_scheduler=True)
        return ours

    difference = (quack_step().float() - ours_step().float()).abs().max().item()  # also compiles and tunes both
    times = {label: time_ms(fn) for label, fn in (("quack", quack_step), ("ours", ours_step))}
    return [f"T{tokens} d{dim} F{hidden} bf16", times["quack"], times["ours"], times["quack"] / times["ours"],
            f"{2 * tokens * dim * hidden / times['ours'] / 1e9:.0f}", f"{difference:.1e}"]


PASS_TOKENS = 65536  # hybrid_350m: 16 rows of 4096
PASS_FILES = {"rms_norm": "kernels/fused/rms_norm/triton_fwd_bwd.py", "conv1d": "kernels/ssd/conv1d.py"}


@dataclass(frozen=True)
class Pass:
    """One kernel launch as the trainer makes it: `launch(module)` runs it through `module` (this tree's kernel
    file or another checkout's) into fixed output buffers and returns them; `reference` is the float32 result.
    `source` names the file in PASS_FILES, `kernel` the autotuned kernel in it."""

    name: str
    shape: str
    source: str
    kernel: str
    min_bytes: int
    launch: Callable[[ModuleType], tuple[torch.Tensor, ...]]
    reference: tuple[torch.Tensor, ...]
    candidates: list[triton.Config]


def load_kernel_file(root: str, relative: str) -> ModuleType:
    """A kernel file of another checkout, imported under a name of its own (its imports resolve to this tree)."""
    path = Path(root) / relative
    if not path.is_file():
        raise FileNotFoundError(f"--passes: no kernel file {path}")
    spec = importlib.util.spec_from_file_location(f"{Path(root).resolve().name}_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def packed_cu_seqlens(tokens: int, row: int = 4096, mean_doc: int = 700) -> torch.Tensor:
    """Document boundaries as the packer makes them: random lengths, every row start a boundary."""
    cuts = torch.randint(1, tokens, (tokens // mean_doc,)).tolist()
    offsets = sorted({0, tokens, *range(row, tokens, row), *cuts})
    return torch.tensor(offsets, dtype=torch.int32, device=DEVICE)


def _reference_grads(fn: Callable, leaves: list[torch.Tensor], grad_out: torch.Tensor) -> tuple[torch.Tensor, ...]:
    leaves = [t.detach().float().requires_grad_() for t in leaves]
    return torch.autograd.grad(fn(*leaves), leaves, grad_out.float())


def gated_norm_backward_pass(tokens: int = PASS_TOKENS, dim: int = 2048, projection_width: int = 4384) -> Pass:
    """The mixer's gated norm backward: z a column slice of the in_proj output, dz written into the gradient
    buffer shaped like it. Bytes: y, z, dout read, dy, dz written, rstd read."""
    from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import rms_norm_fwd

    projection = torch.randn(tokens, projection_width, device=DEVICE, dtype=torch.bfloat16)
    y = torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16)
    weight = 1 + 0.1 * torch.randn(dim, device=DEVICE)
    dout = torch.randn_like(y)
    gate = projection[:, :dim]
    _, _, rstd = rms_norm_fwd(y, weight, 1e-5, gate=gate)
    dy, grad = torch.empty_like(y), torch.empty_like(projection)

    def launch(module: ModuleType) -> tuple[torch.Tensor, ...]:
        dweight = module.rms_norm_bwd(dout, y, weight, rstd, dy, gate=gate, dgate=grad[:, :dim])
        return dy, grad[:, :dim], dweight

    reference = _reference_grads(lambda y, z, w: gated_rms_norm_reference(y, z, w, 1e-5), [y, gate, weight], dout)
    return Pass("gated rms_norm bwd", f"T{tokens} D{dim} z, dz in [T, {projection_width}] bf16", "rms_norm",
                "_rms_norm_bwd_kernel", 10 * tokens * dim + 4 * tokens, launch, reference, norm_candidates(dim))


def residual_norm_backward_pass(tokens: int = PASS_TOKENS, dim: int = 1024) -> Pass:
    """The blocks' norm backward with the residual stream's gradient. Bytes: dy, stream, dstream read, dx
    written, rstd read."""
    from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import rms_norm_fwd

    stream = torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16)
    weight = 1 + 0.1 * torch.randn(dim, device=DEVICE)
    dout, dstream = torch.randn_like(stream), torch.randn_like(stream)
    _, _, rstd = rms_norm_fwd(stream, weight, 1e-6)
    dx = torch.empty_like(stream)

    def launch(module: ModuleType) -> tuple[torch.Tensor, ...]:
        return dx, module.rms_norm_bwd(dout, stream, weight, rstd, dx, dhidden=dstream)

    dstream_ref, dweight_ref = _reference_grads(rms_norm_reference, [stream, weight], dout)
    reference = (dstream_ref + dstream.float(), dweight_ref)
    return Pass("rms_norm+residual bwd", f"T{tokens} D{dim} bf16", "rms_norm", "_rms_norm_bwd_kernel",
                8 * tokens * dim + 4 * tokens, launch, reference, norm_candidates(dim))


def norm_forward_passes(tokens: int = PASS_TOKENS, dim: int = 1024, gated_dim: int = 2048,
                        projection_width: int = 4384) -> list[Pass]:
    """The three norm forwards of a step: the block's first norm (reads the stream), the second (adds the
    attention output into the stream and writes both), the mixer's gated norm (z a column slice of the in_proj
    output). Bytes: the inputs read, the outputs written (rstd included)."""
    stream, attended = (torch.randn(tokens, dim, device=DEVICE, dtype=torch.bfloat16) for _ in range(2))
    weight = 1 + 0.1 * torch.randn(dim, device=DEVICE)
    y = torch.randn(tokens, gated_dim, device=DEVICE, dtype=torch.bfloat16)
    gate = torch.randn(tokens, projection_width, device=DEVICE, dtype=torch.bfloat16)[:, :gated_dim]
    gated_weight = 1 + 0.1 * torch.randn(gated_dim, device=DEVICE)

    def run(x: torch.Tensor, w: torch.Tensor, eps: float, **inputs: torch.Tensor) -> Callable:
        def launch(module: ModuleType) -> tuple[torch.Tensor, ...]:
            out, hidden, rstd = module.rms_norm_fwd(x, w, eps, **inputs)
            return (out, rstd) if hidden is x else (out, hidden, rstd)
        return launch

    with torch.no_grad():
        plain = rms_norm_reference(stream.float(), weight, 1e-6)
        added, stream_ref = rms_norm_reference(attended.float(), weight, 1e-6, stream.float())
        gated = gated_rms_norm_reference(y.float(), gate.float(), gated_weight, 1e-5)

    def rstd(h: torch.Tensor, eps: float) -> torch.Tensor:
        return h.float().square().mean(-1).add(eps).rsqrt()

    gated_input = y.float() * torch.nn.functional.silu(gate.float())
    shape, candidates = f"T{tokens} D{dim} bf16", norm_candidates(dim)
    return [
        Pass("rms_norm fwd", shape, "rms_norm", "_rms_norm_fwd_kernel", 4 * tokens * dim + 4 * tokens,
             run(stream, weight, 1e-6), (plain, rstd(stream, 1e-6)), candidates),
        Pass("rms_norm+residual fwd", shape, "rms_norm", "_rms_norm_fwd_kernel", 8 * tokens * dim + 4 * tokens,
             run(attended, weight, 1e-6, residual=stream), (added, stream_ref, rstd(stream_ref, 1e-6)), candidates),
        Pass("gated rms_norm fwd", f"T{tokens} D{gated_dim} z in [T, {projection_width}] bf16", "rms_norm",
             "_rms_norm_fwd_kernel", 6 * tokens * gated_dim + 4 * tokens, run(y, gated_weight, 1e-5, gate=gate),
             (gated, rstd(gated_input, 1e-5)), norm_candidates(gated_dim)),
    ]


def conv1d_passes(tokens: int = PASS_TOKENS, d_inner: int = 2048, d_state: int = 128, heads: int = 32) -> list[Pass]:
    """The mixer's conv1d forward and backward over packed documents: xBC read in place from the in_proj output,
    dxBC written into its gradient buffer. Bytes: x read and y written; x, dy read and dx written."""
    from gristmill.kernels.ssd.conv1d import conv1d_fwd

    channels = d_inner + 2 * d_state
    projection = torch.randn(tokens, d_inner + channels + heads, device=DEVICE, dtype=torch.bfloat16)
    x = projection[:, d_inner : d_inner + channels]
    weight = torch.randn(channels, 4, device=DEVICE) / 2
    bias = torch.randn(channels, device=DEVICE)
    cu_seqlens = packed_cu_seqlens(tokens)
    doc_start = stream_doc_start(cu_seqlens, tokens, x.device)
    y = conv1d_fwd(x, weight, bias, doc_start, True)
    dy, grad = torch.randn_like(y), torch.empty_like(projection)

    def forward(module: ModuleType) -> tuple[torch.Tensor, ...]:
        return (module.conv1d_fwd(x, weight, bias, doc_start, True),)

    def backward(module: ModuleType) -> tuple[torch.Tensor, ...]:
        dx = grad[:, d_inner : d_inner + channels]
        return dx, *module.conv1d_bwd(x, weight, bias, doc_start, dy, True, dx)

    def conv(x, weight, bias):
        return causal_conv1d_reference(x, weight, bias, cu_seqlens=cu_seqlens)

    shape = f"T{tokens} C{channels} W4 {cu_seqlens.numel() - 1} docs, x, dx in [T, {projection.shape[1]}] bf16"
    with torch.no_grad():
        y_ref = conv(x.float(), weight, bias)
    return [
        Pass("conv1d fwd", shape, "conv1d", "_conv1d_fwd_kernel", 4 * tokens * channels, forward, (y_ref,),
             conv_candidates()),
        Pass("conv1d bwd", shape, "conv1d", "_conv1d_bwd_kernel", 6 * tokens * channels, backward,
             _reference_grads(conv, [x, weight, bias], dy), conv_candidates()),
    ]


def _pass_row(case: Pass, module: ModuleType, label: str, rep_ms: int) -> list[object]:
    """Time and error of one launch; outputs are NaN-poisoned first, so an unwritten element fails the check."""
    for out in case.launch(module):
        out.fill_(float("nan"))
    error = max(relative_error(out.float(), ref) for out, ref in zip(case.launch(module), case.reference))
    us = 1e3 * time_ms(lambda: case.launch(module), warmup_ms=50, rep_ms=rep_ms)
    return [case.name, case.shape, label, us, f"{case.min_bytes / us / 1e3:.0f}", f"{error:.1e}"]


def norm_candidates(dim: int) -> list[triton.Config]:
    """The norm backward's launch candidates for `--sweep`: one or two rows per tile, warps, programs per
    multiprocessor (each recompiles: PROGRAMS_PER_SM is a constexpr), loop stages."""
    shapes = [(1, 4), (1, 8), (2, 4), (2, 8), (1, 2) if dim <= 1024 else (1, 16)]
    return [
        triton.Config({"TILE": rows * dim, "PROGRAMS_PER_SM": programs, "LOOP_STAGES": stages}, num_warps=warps,
                      num_stages=1)
        for rows, warps in shapes for programs in (2, 3, 4, 8) for stages in (1, 3, 4)
    ]


def conv_candidates() -> list[triton.Config]:
    """The conv1d walks' launch candidates for `--sweep`: tokens, channels and warps per program, loop stages."""
    return [
        triton.Config({"BLOCK_T": block_t, "BLOCK_C": block_c, "UNROLL": 3, "STAGES": stages}, num_warps=warps,
                      num_stages=1)
        for block_t in (64, 128, 256) for block_c, warps in ((128, 1), (256, 1), (256, 2), (512, 2))
        for stages in (1, 3, 5)
    ]


def measure_passes(roots: list[str], sweep: bool) -> list[list[object]]:
    """The kernels of other checkouts and this tree's (autotuned as the trainer runs them) on the same inputs; with
    `sweep`, each launch candidate of this tree's pinned as the kernel's only config, then the autotuned list again."""
    trees = {Path(root).name: {name: load_kernel_file(root, relative) for name, relative in PASS_FILES.items()}
             for root in roots}
    trees["this tree"] = {name: importlib.import_module(f"gristmill.{relative[:-3].replace('/', '.')}")
                          for name, relative in PASS_FILES.items()}
    torch.manual_seed(0)
    rows = []
    conv_forward, conv_backward = conv1d_passes()
    cases = [conv_backward, gated_norm_backward_pass(), conv_forward, residual_norm_backward_pass(),
             *norm_forward_passes()]
    for case in cases:
        for label, tree in trees.items():
            row = _pass_row(case, tree[case.source], label, 300)
            pick = getattr(getattr(tree[case.source], case.kernel), "best_config", "none (not autotuned)")
            row[2] = f"{label}, tuned pick {pick}"
            rows.append(row)
        print(markdown_table(PASS_HEADER, rows[-len(trees):]), flush=True)
        kernel = getattr(trees["this tree"][case.source], case.kernel)
        if not sweep:
            continue
        tuned = kernel.configs
        for config in case.candidates:
            kernel.configs, kernel.cache = [config], {}
            try:
                rows.append(_pass_row(case, trees["this tree"][case.source], str(config), 120))
            except OutOfResources as error:
                rows.append([case.name, case.shape, str(config), "-", "-", f"does not launch: {error}"])
            print(markdown_table(PASS_HEADER, rows[-1:]), flush=True)
        kernel.configs, kernel.cache = tuned, {}
    return rows


PASS_HEADER = ["pass", "shape", "kernel", "us", "GB/s (bytes it must move)", "max rel err vs fp32 ref"]


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
    "embedding": embedding_case,
    "embedding_zipf": partial(embedding_case, zipf=True),
    "gate_up_interleave": gate_up_interleave_case,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--out", help="also write the markdown table here")
    parser.add_argument("--lce-rows", action="store_true", help="first time the cross-entropy rows kernel alone")
    parser.add_argument("--passes", nargs="+", metavar="ROOT", help="time the bandwidth-bound passes of these "
                        "checkouts (main's first) and this tree's, then stop")
    parser.add_argument("--sweep", action="store_true", help="with --passes, also time each launch candidate")
    parser.add_argument("--quack-lce", action="store_true", help="time our linear + cross-entropy against quack's, "
                        "then stop")
    parser.add_argument("--quack-dgrad", action="store_true", help="time the MLP's dA GEMM with the SwiGLU "
                        "gradient, quack's epilogue against ours, then stop")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("fused_kernels benchmark needs a CUDA GPU")
    if args.quack_dgrad:
        table = markdown_table(QUACK_DGRAD_HEADER, [measure_quack_dgrad(*shape) for shape in QUACK_DGRAD_SHAPES])
        print(write_report([f"{run_stamp()} · one GEMM, median of do_bench", table], args.out))
        return
    if args.quack_lce:
        rows = []
        for shape in QUACK_LCE_SHAPES:
            rows.append(measure_quack_lce(*shape))
            print(markdown_table(QUACK_LCE_HEADER, rows[-1:]), flush=True)
            torch.cuda.empty_cache()
        table = markdown_table(QUACK_LCE_HEADER, rows)
        print(write_report([f"{run_stamp()} · summed loss, fwd+bwd, median of do_bench, peak above inputs", table],
                           args.out))
        return
    if args.passes:
        table = markdown_table(PASS_HEADER, measure_passes(args.passes, args.sweep))
        print(write_report([f"{run_stamp()} · one launch, median of do_bench", table], args.out))
        return
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
