"""Fused RMSNorm (with the optional residual add) in Triton: one pass over each row, both directions."""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fused.launch import check_triton_device, num_warps_for_row, persistent_programs

_MAX_DIM = 65536


@triton.jit
def _rms_norm_fwd_kernel(
    X, RESIDUAL, W, Y, HIDDEN, RSTD, D, eps, HAS_RESIDUAL: tl.constexpr, BLOCK_D: tl.constexpr
):
    row_start = tl.program_id(0).to(tl.int64) * D
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    h = tl.load(X + row_start + cols, mask=mask, other=0.0).to(tl.float32)
    if HAS_RESIDUAL:
        # round the stream to its storage dtype first, so the norm sees what the next block will add to
        h += tl.load(RESIDUAL + row_start + cols, mask=mask, other=0.0).to(tl.float32)
        h = h.to(HIDDEN.dtype.element_ty).to(tl.float32)
        tl.store(HIDDEN + row_start + cols, h.to(HIDDEN.dtype.element_ty), mask=mask)
    rstd = 1.0 / tl.sqrt(tl.sum(h * h, axis=0) / D + eps)
    tl.store(RSTD + tl.program_id(0), rstd)
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row_start + cols, (h * rstd * w).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _rms_norm_bwd_kernel(
    DY, DHIDDEN, HIDDEN, W, RSTD, DX, DW_PARTIAL, n_rows, D,
    HAS_DHIDDEN: tl.constexpr, BLOCK_D: tl.constexpr,
):
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_D)
    mask = cols < D
    w = tl.load(W + cols, mask=mask, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_D], dtype=tl.float32)
    for row in range(pid, n_rows, tl.num_programs(0)):
        row_start = tl.cast(row, tl.int64) * D
        h = tl.load(HIDDEN + row_start + cols, mask=mask, other=0.0).to(tl.float32)
        dy = tl.load(DY + row_start + cols, mask=mask, other=0.0).to(tl.float32)
        rstd = tl.load(RSTD + row)
        dyw = dy * w
        dx = (dyw - h * (rstd * rstd * tl.sum(dyw * h, axis=0) / D)) * rstd
        if HAS_DHIDDEN:
            dx += tl.load(DHIDDEN + row_start + cols, mask=mask, other=0.0).to(tl.float32)
        tl.store(DX + row_start + cols, dx.to(DX.dtype.element_ty), mask=mask)
        dw += dy * h * rstd
    tl.store(DW_PARTIAL + pid.to(tl.int64) * D + cols, dw, mask=mask)


def rms_norm_fwd(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x, residual: [M, D] contiguous. Returns y, the normalized stream h (x itself without residual), rstd."""
    n_rows, dim = x.shape
    y = torch.empty_like(x)
    hidden = x if residual is None else torch.empty_like(x)
    rstd = torch.empty(n_rows, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(dim)
    _rms_norm_fwd_kernel[(n_rows,)](
        x, residual if residual is not None else x, weight, y, hidden, rstd, dim, eps,
        HAS_RESIDUAL=residual is not None, BLOCK_D=block, num_warps=num_warps_for_row(block),
    )
    return y, hidden, rstd


def rms_norm_bwd(
    dy: torch.Tensor, dhidden: torch.Tensor | None, hidden: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns dx (which is also d residual) and dweight; `dhidden` is the gradient of the residual stream."""
    n_rows, dim = hidden.shape
    dx = torch.empty_like(hidden)
    programs = persistent_programs(hidden.device, n_rows)
    dw_partial = torch.empty(programs, dim, dtype=torch.float32, device=hidden.device)
    block = triton.next_power_of_2(dim)
    _rms_norm_bwd_kernel[(programs,)](
        dy, dhidden if dhidden is not None else dy, hidden, weight, rstd, dx, dw_partial, n_rows, dim,
        HAS_DHIDDEN=dhidden is not None, BLOCK_D=block, num_warps=num_warps_for_row(block),
    )
    return dx, dw_partial.sum(0).to(weight.dtype)


class RMSNormFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, eps, residual):
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()
        residual2 = None if residual is None else residual.reshape(-1, shape[-1]).contiguous()
        y, hidden, rstd = rms_norm_fwd(x2, weight.contiguous(), eps, residual2)
        ctx.save_for_backward(hidden, weight, rstd)
        ctx.set_materialize_grads(False)
        ctx.has_residual = residual is not None
        ctx.shape = shape
        if residual is None:
            return y.view(shape)
        return y.view(shape), hidden.view(shape)

    @staticmethod
    def backward(ctx, dy, *maybe_dhidden):
        hidden, weight, rstd = ctx.saved_tensors
        dy2 = torch.zeros_like(hidden) if dy is None else dy.reshape(hidden.shape).contiguous()
        dhidden = maybe_dhidden[0] if ctx.has_residual else None
        dhidden2 = None if dhidden is None else dhidden.reshape(hidden.shape).contiguous()
        dx, dweight = rms_norm_bwd(dy2, dhidden2, hidden, weight.contiguous(), rstd)
        dx = dx.view(ctx.shape)
        return dx, dweight, None, dx if ctx.has_residual else None


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """RMSNorm over the last dim of x `[..., D]` with weight `[D]`, fused with `x + residual` if given.

    Returns y, or (y, x + residual) so the caller keeps the pre-norm residual stream without a second
    pass. Statistics in float32; y and the stream in x's dtype.

    Example: `y, stream = rms_norm(block_out, norm.weight, residual=stream)`.
    """
    if weight.dim() != 1 or weight.shape[0] != x.shape[-1]:
        raise ValueError(f"rms_norm: weight shape {tuple(weight.shape)} does not match x's last dim {x.shape[-1]}")
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError(
            f"rms_norm: residual {tuple(residual.shape)} {residual.dtype} must match x {tuple(x.shape)} {x.dtype}"
        )
    if x.shape[-1] > _MAX_DIM:
        raise ValueError(f"rms_norm: last dim {x.shape[-1]} is over {_MAX_DIM}, the most one program holds")
    if eps <= 0:
        raise ValueError(f"rms_norm: eps must be positive, got {eps}")
    check_triton_device("rms_norm", x, weight)
    return RMSNormFn.apply(x, weight, eps, residual)
