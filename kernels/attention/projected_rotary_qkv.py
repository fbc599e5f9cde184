"""The qkv projection on quack's GEMM with RoPE in its epilogue, then attention: no RoPE pass in either direction.

`rotary_qkv_attention` rotates the projection's q and k columns in a pass of its own, which reads and writes
`[T, (Hq + Hkv) D]` once more (117 us per layer at T 65536 on an H100; transformer_350m trains 1.013-1.015x faster
without it, bench/results/end_to_end.md run 12). quack's `rope_posfreq_epi` turns adjacent column pairs as the GEMM
stores them, by sin and cos of each row's position times each column's frequency: zero for v's columns, an exact
identity, so v leaves the GEMM as it was computed. The backward is `rotary_qkv_attention`'s: the attention kernels
rotate dq and dk back as they store them; the input gradient runs on quack's GEMM too (faster than cuBLAS at the
models' shape, bench/results/fused.md run 10) and the weight gradient on cuBLAS, which was faster there. The
epilogue evaluates its angles in float-float arithmetic and the backward reads them from `rope_cos_sin`'s
float64-derived tables, so both turn by the same angle to float32 rounding.

`normed_projected_rotary_qkv_attention` also takes the attention block's input RMSNorm in: the GEMM that wrote the
stream (the previous MLP's down projection, quack's `gemm_rms`) summed each row's squares, the norm's weight is
taken into the qkv weight, and the projection's epilogue scales each row by its rstd before RoPE; in the backward
the attention kernels scale the gradients by rstd and hand back each row's share of rstd's gradient, and the input
gradient's GEMM adds the rest of the norm's backward in its epilogue. No norm pass runs in either direction
(transformer_350m: 2.9 GB less peak memory, 1.001-1.005x tokens/s, bench/results/end_to_end.md run 19).
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

from gristmill.kernels.attention.function import SUPPORTED_HEAD_DIMS
from gristmill.kernels.attention.inputs import check_cu_seqlens, resolve_softmax_scale
from gristmill.kernels.attention.rotary_qkv import attend_rotated_qkv, rope_tables, rotated_qkv_attention_grad
from gristmill.kernels.fused.column_scale import column_scale
from gristmill.kernels.fused.quack_support import (
    FailureRecord, QuackFailed, compute_dtype, half_precision_hopper_reason, import_quack,
)
from gristmill.kernels.fused.rope.reference import rope_inv_freq
from gristmill.kernels.fused.rope.triton_fwd_bwd import check_position_ids
from gristmill.kernels.fused.weight_gradient import weight_gradient
from gristmill.kernels.tensor_memo import TensorMemo

class QuackQKVFailed(QuackFailed):
    """quack raised on the qkv projection; attention can go on with cuBLAS and the RoPE pass."""


_failures = FailureRecord(QuackQKVFailed)

_POSITIONS = TensorMemo()
"""The step's positions as float32, the epilogue's per-row operand, shared by every attention layer."""


class _QuackGEMMs(NamedTuple):
    rotary_gemm: Callable
    """x, w.T, pos, freq -> {"D": x @ w.T with adjacent column pairs turned by pos * freq}"""
    frequencies: Callable
    """inv_freq, rotated columns, unrotated columns -> the per-column frequency operand"""
    gemm: Callable


@functools.cache
def _quack_gemms() -> tuple[_QuackGEMMs | None, str | None]:
    """quack's GEMM with the position-frequency RoPE epilogue, its frequency-table builder and its plain GEMM (the
    input gradient), or None and why they cannot be imported."""
    found, reason = import_quack(
        "attention: the qkv projection on quack's GEMM with RoPE in its epilogue",
        "quack.epilogue.rotary:rope_posfreq_epi", "quack.epilogue.rotary:make_interleaved_inv_freq",
        "quack.gemm_interface:gemm",
    )
    return (None if found is None else _QuackGEMMs(*found)), reason


class _NormedGEMMs(NamedTuple):
    rstd_rotary_gemm: Callable
    """x, w.T, pos, freq, rstd -> {"D": (x @ w.T) times each row's rstd, then turned as `rotary_gemm` turns it}"""
    stream_grad: Callable
    """A, B, C, y, corr -> {"D": A @ B + C + y * corr}"""


@functools.cache
def _normed_gemms() -> tuple[_NormedGEMMs | None, str | None]:
    """quack's GEMMs for a qkv projection whose input norm is folded in (the row scale in the forward's epilogue,
    the norm's backward in the input gradient's), or None and why they cannot be imported."""
    found, reason = import_quack(
        "attention: the input RMSNorm folded into the qkv projection's quack GEMMs",
        "quack.epilogue.rotary:rstd_rope_posfreq_epi",
        "gristmill.kernels.attention.quack_norm_epilogue:stream_grad_epilogue",
    )
    return (None if found is None else _NormedGEMMs(*found)), reason


@functools.cache
def _frequencies(
    head_dim: int, theta: float, n_heads: int, n_kv_heads: int, device: torch.device
) -> torch.Tensor:
    """The epilogue's per-column frequencies: each q and k head's pairs at theta^(-2i/D), v's columns at zero."""
    rotated, unrotated = (n_heads + n_kv_heads) * head_dim, n_kv_heads * head_dim
    table = _quack_gemms()[0].frequencies(rope_inv_freq(head_dim, theta), rotated, unrotated)
    return table.to(device=device, dtype=torch.float32)


class _ProjectedRotaryAttention(torch.autograd.Function):
    """The weight comes in its own dtype and is cast here, so its gradient leaves cuBLAS in that dtype
    (weight_gradient.py)."""

    @staticmethod
    def forward(ctx, x, weight, positions, frequencies, cos, sin, cu_seqlens, max_seqlen, settings, gemms):
        ctx.weight_dtype = weight.dtype
        weight = weight.to(x.dtype)
        _, n_heads, n_kv_heads, softmax_scale = settings
        qkv = gemms.rotary_gemm(x, weight.T, pos=positions, freq=frequencies, dynamic_scheduler=True)["D"]
        out, lse, doc_order = attend_rotated_qkv(qkv, cu_seqlens, max_seqlen, n_heads, n_kv_heads, softmax_scale)
        ctx.save_for_backward(x, weight, qkv, out, lse, cu_seqlens, doc_order, cos, sin)
        ctx.settings, ctx.gemms = settings, gemms
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, qkv, out, lse, cu_seqlens, doc_order, cos, sin = ctx.saved_tensors
        dqkv = rotated_qkv_attention_grad(grad_out, qkv, out, lse, cu_seqlens, doc_order, cos, sin, ctx.settings)
        dx = ctx.gemms.gemm(dqkv, weight, dynamic_scheduler=True)  # quack beat cuBLAS here (fused.md run 10)
        return dx, weight_gradient(dqkv.T, x, ctx.weight_dtype), None, None, None, None, None, None, None, None


class _NormedProjectedRotaryAttention(torch.autograd.Function):
    """Attention over rope(rstd * (stream @ weight.T)), the stream handed back through it: the weight has the norm's
    weight taken in, rstd came with the stream (the GEMM that wrote it summed its squares), so no norm pass runs.
    The backward kernels hand back d(stream @ weight.T) (the gradient times rstd) and each row's <d(qkv), qkv>,
    rstd's gradient up to a factor; one GEMM then forms the stream's whole gradient (`stream_grad_epilogue`)."""

    @staticmethod
    def forward(ctx, stream, rstd, weight, positions, frequencies, cos, sin, cu_seqlens, max_seqlen, settings, gemms):
        _, n_heads, n_kv_heads, softmax_scale = settings
        qkv = gemms.rstd_rotary_gemm(
            stream, weight.T, pos=positions, freq=frequencies, rstd=rstd, dynamic_scheduler=True
        )["D"]
        out, lse, doc_order = attend_rotated_qkv(qkv, cu_seqlens, max_seqlen, n_heads, n_kv_heads, softmax_scale)
        ctx.save_for_backward(stream, rstd, weight, qkv, out, lse, cu_seqlens, doc_order, cos, sin)
        ctx.settings, ctx.gemms = settings, gemms
        return out, stream.view(stream.shape)

    @staticmethod
    def backward(ctx, grad_out, grad_stream):
        stream, rstd, weight, qkv, out, lse, cu_seqlens, doc_order, cos, sin = ctx.saved_tensors
        _, n_heads, n_kv_heads, _ = ctx.settings
        # zeros: rows outside every document (if cu_seqlens leaves any) get no dot from the kernels
        dots = torch.zeros(n_heads + n_kv_heads, stream.shape[0], device=stream.device, dtype=torch.float32)
        dqkv = rotated_qkv_attention_grad(
            grad_out, qkv, out, lse, cu_seqlens, doc_order, cos, sin, ctx.settings, row_scale=(rstd, dots)
        )
        # rstd's gradient reaches the stream as stream * correction, correction = -rstd^2 / d * sum <d(qkv), qkv>
        correction = dots.sum(0).mul_(rstd.square()).mul_(-1.0 / stream.shape[1])
        grad_stream = grad_stream if grad_stream.stride(-1) == 1 else grad_stream.contiguous()
        dstream = ctx.gemms.stream_grad(
            dqkv, weight, grad_stream, y=stream, corr=correction, out={"D": torch.empty_like(stream)},
            dynamic_scheduler=True,
        )["D"]
        return dstream, None, dqkv.T @ stream, None, None, None, None, None, None, None, None


def projected_rotary_qkv_attention_unavailable_reason(
    x: torch.Tensor, weight: torch.Tensor, n_heads: int, n_kv_heads: int
) -> str | None:
    """None when `projected_rotary_qkv_attention` can run these inputs, else why not (the caller projects with
    cuBLAS and calls `rotary_qkv_attention`)."""
    if (earlier := _failures.earlier()) is not None:
        return earlier
    heads = n_heads + 2 * n_kv_heads
    if x.dim() != 2 or weight.dim() != 2 or weight.shape[1] != x.shape[1] or weight.shape[0] % heads:
        shapes = f"x {tuple(x.shape)} and weight {tuple(weight.shape)}"
        return f"{shapes} are not a [T, d] input and a [{heads} D, d] qkv weight"
    head_dim = weight.shape[0] // heads
    if head_dim not in SUPPORTED_HEAD_DIMS:
        return f"head dim {head_dim} (the attention kernel supports {SUPPORTED_HEAD_DIMS})"
    if x.shape[1] % 8:
        return f"d_model ({x.shape[1]}) must be a multiple of 8 for quack's GEMMs"
    return half_precision_hopper_reason(x, "quack's qkv projection") or _quack_gemms()[1]


def projected_rotary_qkv_attention(
    x: torch.Tensor,
    weight: torch.Tensor,
    position_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    n_heads: int,
    n_kv_heads: int,
    theta: float = 10000.0,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """`rotary_qkv_attention(x @ weight.T, ...)` -> `[T, n_heads, D]`, differentiable in x and weight; check
    `projected_rotary_qkv_attention_unavailable_reason` first. weight's rows are [q heads | k heads | v heads]. Under
    autocast x and weight are cast as a matmul would cast them. A failure inside quack raises `QuackQKVFailed` and
    makes every later availability check name it."""
    gemms, reason = _quack_gemms()
    if gemms is None:
        raise ValueError(f"projected_rotary_qkv_attention needs quack-kernels: {reason}")
    rope = _rope_operands(x, weight, position_ids, cu_seqlens, max_seqlen, n_heads, n_kv_heads, theta, softmax_scale)
    if torch.is_autocast_enabled("cuda"):  # the weight is cast inside the op
        x = x.to(compute_dtype(x))
    elif x.dtype != weight.dtype:  # a caller's mix-up, not quack's failure: quack stays on
        raise ValueError(f"projected_rotary_qkv_attention: x {x.dtype} and weight {weight.dtype} need one dtype "
                         "outside autocast")
    with torch.autocast("cuda", enabled=False):
        return _failures.call(_ProjectedRotaryAttention.apply, x, weight, *rope, gemms)


def _rope_operands(
    x: torch.Tensor, weight: torch.Tensor, position_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
    n_heads: int, n_kv_heads: int, theta: float, softmax_scale: float | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int, tuple[int, int, int, float]]:
    """Checks the caller's heads, theta, positions and offsets (ValueErrors that keep quack on) and returns what both
    autograd functions take after their GEMM operands: positions, frequencies, cos, sin, cu_seqlens, max_seqlen and
    the settings (max_seqlen, n_heads, n_kv_heads, softmax_scale)."""
    if n_heads < 1 or n_kv_heads < 1 or n_heads % n_kv_heads:
        raise ValueError(f"n_kv_heads ({n_kv_heads}) must be positive and divide n_heads ({n_heads})")
    if theta <= 0:
        raise ValueError(f"theta must be positive, got {theta}")
    check_position_ids(position_ids, x.shape[0])
    check_cu_seqlens(cu_seqlens, x.shape[0], max_seqlen, x.device)
    head_dim = weight.shape[0] // (n_heads + 2 * n_kv_heads)
    cos, sin = rope_tables(position_ids, head_dim, theta)
    positions = _POSITIONS.get(position_ids, "float32", lambda: position_ids.to(torch.float32))
    frequencies = _frequencies(head_dim, float(theta), n_heads, n_kv_heads, x.device)
    settings = (max_seqlen, n_heads, n_kv_heads, resolve_softmax_scale(head_dim, softmax_scale))
    return positions, frequencies, cos, sin, cu_seqlens, max_seqlen, settings


def normed_projected_rotary_qkv_attention_unavailable_reason(
    stream: torch.Tensor, weight: torch.Tensor, n_heads: int, n_kv_heads: int
) -> str | None:
    """None when `normed_projected_rotary_qkv_attention` can run these inputs, else why not (the caller norms the
    stream with the norm kernel and projects it as usual)."""
    return (projected_rotary_qkv_attention_unavailable_reason(stream, weight, n_heads, n_kv_heads)
            or _normed_gemms()[1])


def normed_projected_rotary_qkv_attention(
    stream: torch.Tensor,
    rstd: torch.Tensor,
    norm_weight: torch.Tensor,
    weight: torch.Tensor,
    position_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    n_heads: int,
    n_kv_heads: int,
    theta: float = 10000.0,
    softmax_scale: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(`projected_rotary_qkv_attention(rmsnorm(stream) * norm_weight, weight, ...)`, stream), with each row's rstd
    (float32 `[T]`) given: the GEMM that wrote the stream computed it (quack's `gemm_rms`), so the norm costs no
    pass. The stream comes back through this op for the next consumer (an output projection adding into it): its
    gradient then joins the norm's inside this op's backward. Differentiable in stream, norm_weight and weight (not
    in rstd, whose gradient it routes to the stream itself). Check
    `normed_projected_rotary_qkv_attention_unavailable_reason` first."""
    gemms, reason = _normed_gemms()
    if gemms is None:
        raise ValueError(f"normed_projected_rotary_qkv_attention needs quack-kernels: {reason}")
    if rstd.shape != (stream.shape[0],) or rstd.dtype != torch.float32:
        raise ValueError(f"rstd {tuple(rstd.shape)} {rstd.dtype} must be float32 [{stream.shape[0]}], one per row")
    if norm_weight.shape != (stream.shape[1],):
        raise ValueError(f"norm_weight {tuple(norm_weight.shape)} does not match the stream's width {stream.shape[1]}")
    rope = _rope_operands(
        stream, weight, position_ids, cu_seqlens, max_seqlen, n_heads, n_kv_heads, theta, softmax_scale
    )
    dtype = compute_dtype(stream)
    if stream.dtype != dtype:
        raise ValueError(f"normed_projected_rotary_qkv_attention: the stream is {stream.dtype}, the matmuls run in "
                         f"{dtype}")
    # the norm's weight scales the projection's input columns: taken into the weight, it needs no pass over the stream
    folded = column_scale(weight, norm_weight, dtype)
    with torch.autocast("cuda", enabled=False):
        return _failures.call(_NormedProjectedRotaryAttention.apply, stream, rstd.contiguous(), folded, *rope, gemms)
