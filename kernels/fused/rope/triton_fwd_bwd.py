"""RoPE in Triton, in place on q and k; angles come from per-token positions, so packing needs nothing more."""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fused.launch import check_triton_device
from gristmill.kernels.fused.rope.reference import rope_cos_sin


@triton.jit
def _rope_kernel(
    X, Y, COS, SIN, stride_xt, stride_xh, stride_yt, stride_yh, n_heads, half,
    INVERSE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_HALF: tl.constexpr,
):
    t = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_HALF)
    cos = tl.load(COS + t * half + cols, mask=cols < half, other=0.0)[None, :]  # [1, BLOCK_HALF]
    sin = tl.load(SIN + t * half + cols, mask=cols < half, other=0.0)[None, :]
    if INVERSE:
        sin = -sin
    heads = tl.arange(0, BLOCK_H)[:, None]
    head_cols = tl.arange(0, 2 * BLOCK_HALF)[None, :]  # pair i is columns (2i, 2i + 1)
    mask = (heads < n_heads) & (head_cols < 2 * half)
    x = tl.load(X + t * stride_xt + heads * stride_xh + head_cols, mask=mask, other=0.0).to(tl.float32)
    x1, x2 = tl.split(tl.reshape(x, [BLOCK_H, BLOCK_HALF, 2]))  # [BLOCK_H, BLOCK_HALF] each
    y = tl.reshape(tl.join(x1 * cos - x2 * sin, x2 * cos + x1 * sin), [BLOCK_H, 2 * BLOCK_HALF])
    tl.store(Y + t * stride_yt + heads * stride_yh + head_cols, y.to(Y.dtype.element_ty), mask=mask)


def rope_rotate(
    x: torch.Tensor, out: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, inverse: bool
) -> None:
    """Writes x `[T, H, D]` rotated by +angle (or -angle if `inverse`) into out, which may be x itself."""
    n_tokens, n_heads, head_dim = x.shape
    _rope_kernel[(n_tokens,)](
        x, out, cos, sin, x.stride(0), x.stride(1), out.stride(0), out.stride(1),
        n_heads, head_dim // 2, INVERSE=inverse, BLOCK_H=triton.next_power_of_2(n_heads),
        BLOCK_HALF=triton.next_power_of_2(head_dim // 2), num_warps=4,
    )


class RoPEFn(torch.autograd.Function):
    """Rotates one tensor in place, seen as `[T, H, D]`: q and k go through separately, since autograd lets a
    Function modify a view in place only when it returns that one tensor (q, k are often slices of qkv)."""

    @staticmethod
    def forward(ctx, x, cos, sin, heads_shape):
        rope_rotate(x.view(heads_shape), x.view(heads_shape), cos, sin, inverse=False)
        ctx.mark_dirty(x)
        ctx.save_for_backward(cos, sin)
        ctx.heads_shape, ctx.shape = heads_shape, x.shape
        return x

    @staticmethod
    def backward(ctx, dy):
        cos, sin = ctx.saved_tensors
        dy = (dy if dy.stride(-1) == 1 else dy.contiguous()).view(ctx.heads_shape)
        dx = torch.empty_like(dy)
        rope_rotate(dy, dx, cos, sin, inverse=True)
        return dx.view(ctx.shape), None, None, None


def _rotate_in_place(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """A view spanning all of its contiguous base (`linear(x).view(T, H, D)`) is rotated through the base:
    an in-place Function on a view makes autograd rebuild the base's gradient (zero-fill, clone and two
    copies of it per call in the backward), which cost more than the rotation itself."""
    base = x._base
    if base is not None and x.is_contiguous() and base.is_contiguous() and base.numel() == x.numel():
        return RoPEFn.apply(base, cos, sin, x.shape).view(x.shape)
    return RoPEFn.apply(x, cos, sin, x.shape)


def check_rope_inputs(q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float) -> None:
    """Raises ValueError naming the offending value: q `[T, Hq, D]` and k `[T, Hkv, D]` (views with a contiguous
    last dim are fine), an even D, int32/int64 position_ids `[T]` and a positive theta."""
    if q.dim() != 3 or k.dim() != 3 or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"apply_rope: q {tuple(q.shape)} and k {tuple(k.shape)} must be [T, H, D] with equal T, D")
    if theta <= 0:
        raise ValueError(f"apply_rope: theta must be positive, got {theta}")
    if q.shape[2] % 2:
        raise ValueError(f"apply_rope: head dim {q.shape[2]} must be even")
    if q.dtype != k.dtype:
        raise ValueError(f"apply_rope: q dtype {q.dtype} != k dtype {k.dtype}")
    if q.stride(-1) != 1 or k.stride(-1) != 1:
        raise ValueError(f"apply_rope: last dim must be contiguous, got strides {q.stride()} and {k.stride()}")
    check_position_ids(position_ids, q.shape[0])


def check_position_ids(position_ids: torch.Tensor, n_tokens: int) -> None:
    """Raises ValueError unless position_ids is int32/int64 `[n_tokens]`."""
    if position_ids.shape != (n_tokens,) or position_ids.dtype not in (torch.int32, torch.int64):
        got = f"{tuple(position_ids.shape)} {position_ids.dtype}"
        raise ValueError(f"apply_rope: position_ids {got} must be int32/int64 [{n_tokens}]")


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotates q `[T, Hq, D]` and k `[T, Hkv, D]` in place by position_ids `[T]` (int32/int64).

    Positions restart at 0 at each packed document, as the packer emits them, so a packed row rotates
    exactly like its documents one by one. q and k may be strided views (e.g. slices of a fused qkv
    projection) as long as their last dim is contiguous; views from `split`/`chunk` cannot be
    modified in place under autograd, slice instead. Returns the same q and k tensors.
    """
    check_rope_inputs(q, k, position_ids, theta)
    check_triton_device("apply_rope", q, k, position_ids)
    cos, sin = rope_cos_sin(position_ids, q.shape[-1], theta)
    return _rotate_in_place(q, cos, sin), _rotate_in_place(k, cos, sin)
