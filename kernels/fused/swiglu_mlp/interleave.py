"""The MLP's gate/up weight in the row order quack's gated GEMM reads, cast in the same pass, and its gradient back.

quack wants gate and up interleaved row by row (gate_0, up_0, gate_1, ...); the model keeps `[gate | up]` rows
(checkpoints and the CPU path unchanged), so every step copies the float32 weight into an interleaved bf16 one, and
the backward copies the gradient back. As `copy_` between permuted views those two passes ran on ATen's generic
strided kernel at 1.2-1.6 TB/s (28 and 21 us per transformer_350m layer on an H100); here each program moves whole
row blocks, loads and stores along contiguous rows: 12 us each way, ~2.8 TB/s (bench/results/end_to_end.md run 24).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.interpreter import interpreting

BLOCK_ROWS = 16
BLOCK_COLS = 256


def interleave_rows_reference(rows: torch.Tensor, dtype: torch.dtype, interleave: bool) -> torch.Tensor:
    """`[a | b]` rows -> a_0, b_0, a_1, b_1, ... (interleave) or back (not interleave), cast to `dtype`."""
    half = rows.shape[0] // 2
    out = torch.empty(rows.shape, dtype=dtype, device=rows.device)
    if interleave:
        out.view(half, 2, -1).copy_(rows.view(2, half, -1).transpose(0, 1))
    else:
        out.view(2, half, -1).copy_(rows.view(half, 2, -1).transpose(0, 1))
    return out


@triton.jit
def _interleave_rows_kernel(
    src, dst, half, cols, INTERLEAVE: tl.constexpr, BLOCK_ROWS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):
    out_rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    if INTERLEAVE:  # output row 2i + j holds input row j * half + i
        in_rows = (out_rows % 2) * half + out_rows // 2
    else:  # output row j * half + i holds input row 2i + j
        in_rows = (out_rows % half) * 2 + out_rows // half
    col = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    inside = (out_rows[:, None] < 2 * half) & (col[None, :] < cols)
    values = tl.load(src + in_rows[:, None].to(tl.int64) * cols + col[None, :], mask=inside)
    tl.store(dst + out_rows[:, None].to(tl.int64) * cols + col[None, :], values.to(dst.dtype.element_ty), mask=inside)


def interleave_rows(rows: torch.Tensor, dtype: torch.dtype, interleave: bool) -> torch.Tensor:
    """`interleave_rows_reference` as one Triton pass on CUDA (or in the interpreter); the reference elsewhere."""
    if not (rows.is_cuda or interpreting()):
        return interleave_rows_reference(rows, dtype, interleave)
    rows = rows.contiguous()
    out = torch.empty(rows.shape, dtype=dtype, device=rows.device)
    n_rows, cols = rows.shape
    if rows.numel():
        grid = (triton.cdiv(n_rows, BLOCK_ROWS), triton.cdiv(cols, BLOCK_COLS))
        _interleave_rows_kernel[grid](
            rows, out, n_rows // 2, cols, INTERLEAVE=interleave, BLOCK_ROWS=BLOCK_ROWS, BLOCK_COLS=BLOCK_COLS
        )
    return out


class _InterleavedGateUp(torch.autograd.Function):
    """The interleaving copy with the cast in it: a cast and then the interleave would each copy the whole weight,
    forward and again backward."""

    @staticmethod
    def forward(ctx, w_gate_up: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        ctx.weight_dtype = w_gate_up.dtype
        return interleave_rows(w_gate_up, dtype, interleave=True)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return interleave_rows(grad, ctx.weight_dtype, interleave=False), None


def interleave_gate_up(w_gate_up: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`[gate | up]` rows `[2F, d]` -> rows gate_0, up_0, gate_1, up_1, ... (the layout quack's gated GEMM reads), in
    `dtype` (default: w_gate_up's), cast in the same copy; its gradient comes back in w_gate_up's dtype and layout."""
    if w_gate_up.dim() != 2 or w_gate_up.shape[0] % 2:
        raise ValueError(f"interleave_gate_up: {tuple(w_gate_up.shape)} is not a [2F, d] gate/up weight")
    return _InterleavedGateUp.apply(w_gate_up, dtype or w_gate_up.dtype)
