"""A weight with its input columns scaled by a norm's weight, in the matmul's dtype, as one autograd op.

Folding an RMSNorm's weight into the projection after it (`weight * norm_weight`, then the cast) took two passes
forward and four backward in plain PyTorch (the cast's, the product's, and the product and sum for the norm
weight's gradient), each over the whole weight, per layer and step. Here the forward is one multiply that writes
the compute dtype, and the backward one Triton pass that reads the folded gradient and the weight once, writing
the weight's gradient and each row block's share of the norm weight's (summed by a small reduction after).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.interpreter import interpreting

BLOCK_ROWS = 32
BLOCK_COLS = 256


def column_scale_reference(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """weight `[rows, cols]` times scale `[cols]` per column, in float32, rounded to `dtype`."""
    return (weight.float() * scale.float()).to(dtype)


@triton.jit
def _column_scale_bwd_kernel(
    grad, weight, scale, dweight, dscale_partial, rows, cols,
    BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):
    row = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    col = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    inside = (row[:, None] < rows) & (col[None, :] < cols)
    offsets = row[:, None].to(tl.int64) * cols + col[None, :]
    g = tl.load(grad + offsets, mask=inside, other=0.0).to(tl.float32)
    w = tl.load(weight + offsets, mask=inside, other=0.0).to(tl.float32)
    s = tl.load(scale + col, mask=col < cols, other=0.0).to(tl.float32)
    tl.store(dweight + offsets, (g * s[None, :]).to(dweight.dtype.element_ty), mask=inside)
    tl.store(dscale_partial + tl.program_id(0) * cols + col, tl.sum(g * w, axis=0), mask=col < cols)


class _ColumnScale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        ctx.save_for_backward(weight, scale)
        out = torch.empty(weight.shape, dtype=dtype, device=weight.device)
        return torch.mul(weight, scale, out=out)  # computed in the inputs' promoted dtype, rounded once on store

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        weight, scale = ctx.saved_tensors
        if not (grad.is_cuda or interpreting()):
            return (grad * scale).to(weight.dtype), (grad.float() * weight.float()).sum(0).to(scale.dtype), None
        grad = grad.contiguous()
        rows, cols = weight.shape
        dweight = torch.empty_like(weight)
        row_blocks = triton.cdiv(rows, BLOCK_ROWS)
        partial = torch.empty(row_blocks, cols, dtype=torch.float32, device=weight.device)
        _column_scale_bwd_kernel[(row_blocks, triton.cdiv(cols, BLOCK_COLS))](
            grad, weight, scale, dweight, partial, rows, cols, BLOCK_ROWS=BLOCK_ROWS, BLOCK_COLS=BLOCK_COLS
        )
        return dweight, partial.sum(0).to(scale.dtype), None


def column_scale(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`column_scale_reference(weight, scale, dtype)`, differentiable in weight and scale: a norm's weight taken into
    the projection that reads the normed rows (`x * scale @ weight.T == x @ (weight * scale).T`)."""
    if weight.dim() != 2 or scale.shape != (weight.shape[1],):
        raise ValueError(f"column_scale: weight {tuple(weight.shape)} and scale {tuple(scale.shape)} are not a "
                         "[rows, cols] weight and a [cols] column scale")
    return _ColumnScale.apply(weight.contiguous(), scale.contiguous(), dtype)
