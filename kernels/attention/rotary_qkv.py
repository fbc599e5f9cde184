"""Attention straight from one fused qkv projection, with RoPE.

The projection's output `[T, (Hq + 2 Hkv) D]` is used where it lies: RoPE rotates its q and k columns in place,
attention reads q, k and v as strided views, and the backward writes dq, dk and dv into one buffer shaped like
it, dq and dk rotated back inside the attention kernels (a separate inverse RoPE pass would read and write
[T, (Hq + Hkv) D] once more per layer). Separate q, k, v projections would cost three thin matmuls, two sums of
their input gradients and a concat (or a gradient rebuilt through views) per layer.
"""

import torch

from gristmill.kernels.attention.backward import attention_backward
from gristmill.kernels.attention.forward import attention_forward
from gristmill.kernels.attention.function import (
    check_kernel_device, document_order, flash_attention_varlen, unsupported_reason,
)
from gristmill.kernels.attention.inputs import check_attention_inputs, resolve_softmax_scale
from gristmill.kernels.attention.reference import sdpa_attention_reference
from gristmill.kernels.fused.rope.reference import apply_rope_reference, rope_cos_sin
from gristmill.kernels.fused.rope.triton_fwd_bwd import check_rope_inputs, rope_rotate
from gristmill.kernels.tensor_memo import TensorMemo


_ROPE_TABLES = TensorMemo()
"""cos and sin of the last `position_ids`, shared by every attention layer of a step."""


def split_qkv(qkv: torch.Tensor, n_heads: int, n_kv_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Views q `[T, Hq, D]`, k and v `[T, Hkv, D]` of a fused projection output `[T, (Hq + 2 Hkv) D]`."""
    if n_heads < 1 or n_kv_heads < 1:
        raise ValueError(f"n_heads ({n_heads}) and n_kv_heads ({n_kv_heads}) must be positive")
    heads = n_heads + 2 * n_kv_heads
    if qkv.dim() != 2 or qkv.shape[1] % heads:
        raise ValueError(
            f"qkv must be [T, (n_heads + 2 * n_kv_heads) * head_dim] = [T, {heads} * D], got {tuple(qkv.shape)}"
        )
    if qkv.stride(-1) != 1:
        raise ValueError(f"qkv's last dim must be contiguous, got strides {qkv.stride()}")
    per_head = qkv.view(qkv.shape[0], heads, qkv.shape[1] // heads)
    return per_head[:, :n_heads], per_head[:, n_heads : n_heads + n_kv_heads], per_head[:, n_heads + n_kv_heads :]


def rope_tables(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """`rope_cos_sin` of this step's positions, built by the first attention layer and shared by the rest."""
    return _ROPE_TABLES.get(position_ids, (head_dim, theta), lambda: rope_cos_sin(position_ids, head_dim, theta))


def attend_rotated_qkv(
    qkv: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, n_heads: int, n_kv_heads: int, softmax_scale: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The attention forward over q, k, v read from qkv in place: (out, lse, document order) for the backward."""
    doc_order = document_order(cu_seqlens)
    q, k, v = split_qkv(qkv, n_heads, n_kv_heads)
    out, lse = attention_forward(q, k, v, cu_seqlens, max_seqlen, True, None, softmax_scale, doc_order)
    return out, lse, doc_order


def rotated_qkv_attention_grad(
    grad_out: torch.Tensor, qkv: torch.Tensor, out: torch.Tensor, lse: torch.Tensor, cu_seqlens: torch.Tensor,
    doc_order: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, settings: tuple[int, int, int, float],
    row_scale: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """d(qkv before RoPE), shaped like qkv, of `attend_rotated_qkv` over a qkv whose q and k columns RoPE rotated by
    (cos, sin): the kernels rotate dq and dk back as they store them. `settings`: (max_seqlen, n_heads, n_kv_heads,
    softmax_scale); `row_scale` as for `attention_backward` (for a qkv whose projection scaled its rows)."""
    max_seqlen, n_heads, n_kv_heads, softmax_scale = settings
    dqkv = torch.empty(qkv.shape, dtype=qkv.dtype, device=qkv.device)  # every column gets written
    attention_backward(
        grad_out if grad_out.stride(-1) == 1 else grad_out.contiguous(),
        *split_qkv(qkv, n_heads, n_kv_heads), out, lse, cu_seqlens, max_seqlen, True, None, softmax_scale,
        grads=split_qkv(dqkv, n_heads, n_kv_heads), doc_order=doc_order, rope=(cos, sin), row_scale=row_scale,
    )
    return dqkv


class RotaryQKVAttentionFunction(torch.autograd.Function):
    """Rotates qkv's q and k columns in place (so it returns qkv too, marked dirty) and saves them rotated; the
    backward kernels rotate dq and dk back as they store them into the one gradient buffer."""

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(ctx, qkv, cos, sin, cu_seqlens, max_seqlen, n_heads, n_kv_heads, softmax_scale):
        rotated = qkv.view(qkv.shape[0], n_heads + 2 * n_kv_heads, -1)[:, : n_heads + n_kv_heads]
        rope_rotate(rotated, rotated, cos, sin, inverse=False)
        out, lse, doc_order = attend_rotated_qkv(qkv, cu_seqlens, max_seqlen, n_heads, n_kv_heads, softmax_scale)
        ctx.mark_dirty(qkv)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(qkv, out, lse, cu_seqlens, doc_order, cos, sin)
        ctx.settings = (max_seqlen, n_heads, n_kv_heads, softmax_scale)
        return out, qkv

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx, grad_out, grad_qkv):
        qkv, out, lse, cu_seqlens, doc_order, cos, sin = ctx.saved_tensors
        _, n_heads, n_kv_heads, _ = ctx.settings
        dqkv = None
        if grad_out is not None:
            dqkv = rotated_qkv_attention_grad(grad_out, qkv, out, lse, cu_seqlens, doc_order, cos, sin, ctx.settings)
        if grad_qkv is not None:  # someone used the rotated qkv this returns: its q, k part is in the rotated frame
            unrotated = grad_qkv.clone(memory_format=torch.contiguous_format)
            rotated_part = unrotated.view(qkv.shape[0], -1, out.shape[2])[:, : n_heads + n_kv_heads]
            rope_rotate(rotated_part, rotated_part, cos, sin, inverse=True)
            dqkv = unrotated if dqkv is None else dqkv.add_(unrotated)
        return dqkv, None, None, None, None, None, None, None


def _check_inputs(
    qkv: torch.Tensor, position_ids: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
    n_heads: int, n_kv_heads: int, theta: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    q, k, v = split_qkv(qkv, n_heads, n_kv_heads)
    check_rope_inputs(q, k, position_ids, theta)
    check_attention_inputs(q, k, v, cu_seqlens, max_seqlen, True, None)
    return q, k, v


def rotary_qkv_attention(
    qkv: torch.Tensor,
    position_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    n_heads: int,
    n_kv_heads: int,
    theta: float = 10000.0,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Causal attention over packed documents of RoPE-rotated q, k and v, all three read from qkv.

    Args:
        qkv: `[T, (n_heads + 2 * n_kv_heads) * D]`, a fused projection's output ([q heads | k heads | v heads]);
            its q and k columns are rotated in place (autograd knows: qkv comes out a new version).
        position_ids: int32/int64 `[T]`, restarting at 0 at each document, as the packer emits them.
        cu_seqlens, max_seqlen: document starts and the longest document, as for `flash_attention_varlen`.

    Returns `[T, n_heads, D]`, differentiable in qkv. Head dims and dtypes the kernel lacks fall back to the
    references with a warning.
    """
    q, k, v = _check_inputs(qkv, position_ids, cu_seqlens, max_seqlen, n_heads, n_kv_heads, theta)
    scale = resolve_softmax_scale(q.shape[-1], softmax_scale)
    if unsupported_reason(q) is not None:
        q, k = apply_rope_reference(q, k, position_ids, theta)
        return flash_attention_varlen(q, k, v, cu_seqlens, max_seqlen, softmax_scale=scale)
    check_kernel_device(q)
    cos, sin = rope_tables(position_ids, q.shape[-1], theta)
    out, _ = RotaryQKVAttentionFunction.apply(qkv, cos, sin, cu_seqlens, max_seqlen, n_heads, n_kv_heads, scale)
    return out


def rotary_qkv_attention_reference(
    qkv: torch.Tensor,
    position_ids: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    n_heads: int,
    n_kv_heads: int,
    theta: float = 10000.0,
    rows: int = 1,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """The same in plain PyTorch (out-of-place RoPE, SDPA over rows of equal length): the trainer's CPU path."""
    q, k, v = _check_inputs(qkv, position_ids, cu_seqlens, max_seqlen, n_heads, n_kv_heads, theta)
    q, k = apply_rope_reference(q, k, position_ids, theta)
    return sdpa_attention_reference(q, k, v, cu_seqlens, max_seqlen, rows=rows, softmax_scale=softmax_scale)
