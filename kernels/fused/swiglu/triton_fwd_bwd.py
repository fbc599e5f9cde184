"""Fused SwiGLU in Triton: one read of gate and up, one write; the backward recomputes silu.

Rows may be strided, so gate and up can be the two halves of one projection output (`swiglu_halves`): the
MLP then runs one gate+up matmul and its backward gets one gradient tensor, with no concatenation or
gradient accumulation between them.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fused.launch import check_triton_device

_BLOCK = 1024


@triton.jit
def _swiglu_fwd_kernel(GATE, UP, Y, stride_gate, stride_up, stride_y, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(GATE + row * stride_gate + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(UP + row * stride_up + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(Y + row * stride_y + cols, (g * tl.sigmoid(g) * u).to(Y.dtype.element_ty), mask=mask)


@triton.jit
def _swiglu_bwd_kernel(
    GATE, UP, DY, DGATE, DUP, stride_gate, stride_up, stride_dy, stride_dgate, stride_dup, n_cols,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < n_cols
    g = tl.load(GATE + row * stride_gate + cols, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(UP + row * stride_up + cols, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(DY + row * stride_dy + cols, mask=mask, other=0.0).to(tl.float32)
    sig = tl.sigmoid(g)
    tl.store(DUP + row * stride_dup + cols, (dy * g * sig).to(DUP.dtype.element_ty), mask=mask)
    dgate = dy * u * sig * (1.0 + g * (1.0 - sig))
    tl.store(DGATE + row * stride_dgate + cols, dgate.to(DGATE.dtype.element_ty), mask=mask)


def _grid(rows: int, cols: int) -> tuple[int, int]:
    return rows, triton.cdiv(cols, _BLOCK)


def _rows(x: torch.Tensor) -> torch.Tensor:
    """x as [rows, cols] with unit column stride, without a copy where the layout allows."""
    x = x if x.dim() and x.stride(-1) == 1 else x.contiguous()
    return x if x.dim() == 2 else x.reshape(-1, x.shape[-1] if x.dim() else 1)


def swiglu_fwd(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """gate, up: [rows, cols] with unit column stride (any row stride); returns a contiguous [rows, cols]."""
    rows, cols = gate.shape
    y = torch.empty(rows, cols, dtype=gate.dtype, device=gate.device)
    if y.numel() == 0:
        return y
    _swiglu_fwd_kernel[_grid(rows, cols)](
        gate, up, y, gate.stride(0), up.stride(0), y.stride(0), cols, BLOCK=_BLOCK, num_warps=4
    )
    return y


def swiglu_bwd(
    gate: torch.Tensor, up: torch.Tensor, dy: torch.Tensor, dgate: torch.Tensor, dup: torch.Tensor
) -> None:
    """Writes the gradients into dgate and dup, [rows, cols] views that may share one buffer."""
    rows, cols = gate.shape
    if rows * cols == 0:
        return
    _swiglu_bwd_kernel[_grid(rows, cols)](
        gate, up, dy, dgate, dup, gate.stride(0), up.stride(0), dy.stride(0), dgate.stride(0), dup.stride(0),
        cols, BLOCK=_BLOCK, num_warps=4,
    )


class SwiGLUFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate, up):
        gate2, up2 = _rows(gate), _rows(up)
        ctx.save_for_backward(gate2, up2)
        ctx.shapes = gate.shape, up.shape
        return swiglu_fwd(gate2, up2).view(gate.shape)

    @staticmethod
    def backward(ctx, dy):
        gate, up = ctx.saved_tensors
        dgate, dup = torch.empty_like(gate), torch.empty_like(up)
        swiglu_bwd(gate, up, _rows(dy), dgate, dup)
        return dgate.view(ctx.shapes[0]), dup.view(ctx.shapes[1])


class SwiGLUHalvesFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, gate_up):
        gate_up2 = _rows(gate_up)
        half = gate_up2.shape[1] // 2
        ctx.save_for_backward(gate_up2)
        ctx.shape = gate_up.shape
        return swiglu_fwd(gate_up2[:, :half], gate_up2[:, half:]).view(*gate_up.shape[:-1], half)

    @staticmethod
    def backward(ctx, dy):
        (gate_up,) = ctx.saved_tensors
        half = gate_up.shape[1] // 2
        grad = torch.empty_like(gate_up)
        swiglu_bwd(gate_up[:, :half], gate_up[:, half:], _rows(dy), grad[:, :half], grad[:, half:])
        return grad.view(ctx.shape)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up for two tensors of one shape and dtype, computed in float32 inside the kernel.

    Saves only gate and up for the backward (no silu intermediate), which recomputes the sigmoid. Inputs
    whose last dim is contiguous (e.g. column slices of a wider projection) are read in place.
    """
    if gate.shape != up.shape or gate.dtype != up.dtype:
        raise ValueError(f"swiglu: gate {tuple(gate.shape)} {gate.dtype} and up {tuple(up.shape)} {up.dtype} differ")
    check_triton_device("swiglu", gate, up)
    return SwiGLUFn.apply(gate, up)


def swiglu_halves(gate_up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up where gate and up are the first and second half of the last dim of `gate_up`.

    Example: `mlp.down(swiglu_halves(mlp.gate_up(x)))`, one projection of width 2 x hidden.
    """
    if gate_up.dim() == 0 or gate_up.shape[-1] % 2:
        raise ValueError(f"swiglu_halves: last dim of {tuple(gate_up.shape)} must be even (gate, then up)")
    check_triton_device("swiglu_halves", gate_up)
    return SwiGLUHalvesFn.apply(gate_up)
