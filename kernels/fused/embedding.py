"""Token embedding lookup that writes the compute dtype, with a sort-based, deterministic weight gradient.

The model's embedding table is float32 and its residual stream bf16: `F.embedding` then a cast took two passes
forward and two backward (the cast back to float32, then torch's `embedding_dense_backward`, ~1 ms of a 65,536-token
step on an H100, bench/results/end_to_end.md run 20). Here the lookup stores the compute dtype as it gathers, and the
backward sorts the token ids once (on the GPU, so the host never waits) and has one program per (token id, column
block) sum that id's gradient rows in sorted order: every row of the table's gradient is written exactly once
(zeros for ids absent from the batch), with no atomics, so the result does not change from run to run.
"""

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from gristmill.kernels.fused.launch import check_triton_device
from gristmill.kernels.interpreter import interpreting

BLOCK_TOKENS = 16
"""Rows per gather program."""
BLOCK_COLS = 256


def _gradient_configs() -> list[triton.Config]:
    """Rows summed per step of a gradient program and columns per program. Most programs sum a row or two, so their
    dependent loads (bounds, positions, rows) set the pace and wider column blocks mean fewer such chains per table
    row; but in text a few ids take several percent of the tokens (thousands of rows per batch), and their programs
    take one step per BLOCK_TOKENS rows, so no config sums fewer than 16 rows a step. The autotuner picks (every
    launch writes the whole gradient, so its trial launches change nothing); on an H100 the lookup and gradient
    together took 0.63 ms with uniform ids and 1.06 ms with Zipf ids (bench/results/fused.md run 13)."""
    if interpreting():
        return [triton.Config({"BLOCK_TOKENS": 16, "BLOCK_COLS": 256}, num_warps=4)]
    return [
        triton.Config({"BLOCK_TOKENS": tokens, "BLOCK_COLS": cols}, num_warps=warps)
        for tokens, cols, warps in ((32, 256, 4), (16, 512, 4), (16, 1024, 8), (32, 512, 8), (64, 256, 8))
    ]


def embedding_reference(ids: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """weight's rows at `ids`, cast to `dtype`."""
    return F.embedding(ids, weight).to(dtype)


@triton.jit
def _embedding_gather_kernel(
    ids, weight, out, n_tokens, width, BLOCK_TOKENS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):
    token = tl.program_id(0) * BLOCK_TOKENS + tl.arange(0, BLOCK_TOKENS)
    col = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    inside = (token[:, None] < n_tokens) & (col[None, :] < width)
    row = tl.load(ids + token, mask=token < n_tokens, other=0).to(tl.int64)
    values = tl.load(weight + row[:, None] * width + col[None, :], mask=inside)
    tl.store(out + token[:, None].to(tl.int64) * width + col[None, :], values.to(out.dtype.element_ty), mask=inside)


@triton.autotune(configs=_gradient_configs(), key=["width"])
@triton.jit
def _embedding_grad_kernel(
    grad, order, starts, dweight, width, BLOCK_TOKENS: tl.constexpr, BLOCK_COLS: tl.constexpr,
):
    """Row `program_id(0)` of the table's gradient: the sum of grad's rows order[starts[id] : starts[id + 1]]."""
    table_row = tl.program_id(0)
    col = tl.program_id(1) * BLOCK_COLS + tl.arange(0, BLOCK_COLS)
    first = tl.load(starts + table_row)
    end = tl.load(starts + table_row + 1)
    total = tl.zeros([BLOCK_COLS], dtype=tl.float32)
    for step in range(first, end, BLOCK_TOKENS):
        position = step + tl.arange(0, BLOCK_TOKENS)
        token = tl.load(order + position, mask=position < end, other=0).to(tl.int64)
        inside = (position[:, None] < end) & (col[None, :] < width)
        rows = tl.load(grad + token[:, None] * width + col[None, :], mask=inside, other=0.0)
        total += tl.sum(rows.to(tl.float32), axis=0)
    tl.store(dweight + table_row.to(tl.int64) * width + col, total.to(dweight.dtype.element_ty), mask=col < width)


class _Embedding(torch.autograd.Function):
    @staticmethod
    def forward(ctx, ids: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        ctx.save_for_backward(ids)
        ctx.table_shape, ctx.table_dtype = weight.shape, weight.dtype
        out = torch.empty(ids.numel(), weight.shape[1], dtype=dtype, device=weight.device)
        if ids.numel():
            grid = (triton.cdiv(ids.numel(), BLOCK_TOKENS), triton.cdiv(weight.shape[1], BLOCK_COLS))
            _embedding_gather_kernel[grid](
                ids, weight, out, ids.numel(), weight.shape[1], BLOCK_TOKENS=BLOCK_TOKENS, BLOCK_COLS=BLOCK_COLS
            )
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor, None]:
        (ids,) = ctx.saved_tensors
        rows, width = ctx.table_shape
        sorted_ids, order = torch.sort(ids, stable=True)
        starts = torch.searchsorted(sorted_ids, torch.arange(rows + 1, device=ids.device, dtype=sorted_ids.dtype))
        dweight = torch.empty(rows, width, dtype=ctx.table_dtype, device=grad.device)
        _embedding_grad_kernel[lambda meta: (rows, triton.cdiv(width, meta["BLOCK_COLS"]))](
            grad.contiguous(), order, starts, dweight, width
        )
        return None, dweight, None


def embedding(ids: torch.Tensor, weight: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`embedding_reference(ids, weight, dtype)` for 1-D integer ids, differentiable in weight. The ids must lie in
    [0, rows): the kernel does not check them (the trainer's loader checks the data's vocabulary against the
    model's once, at start)."""
    if ids.dim() != 1 or weight.dim() != 2 or ids.dtype.is_floating_point:
        raise ValueError(f"embedding: ids {tuple(ids.shape)} {ids.dtype} and weight {tuple(weight.shape)} are not "
                         "1-D integer ids and a [rows, width] table")
    check_triton_device("embedding", ids, weight)
    return _Embedding.apply(ids.contiguous(), weight.contiguous(), dtype)
