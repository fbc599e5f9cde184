"""Cross-entropy over rows of logits, d loss / d logits written over the logits: one pass or two.

A row that fits in one program's registers is read once (`one_pass`); a longer row is read twice (logsumexp,
then gradient). Both kernels share the loss and gradient formulas below (README.md has the math and the
measurements behind the limits).
"""

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

ONE_PASS_MAX_ROW_BYTES = 2**16
"""Largest padded row (power-of-two tile times element size) the one-pass kernel holds in registers: a bf16
32k tile compiles without spills on H100; a 64k tile spills (README.md)."""
_TWO_PASS_BLOCK_V = 4096


@triton.jit
def _this_row(LOGITS, LABELS, V, ignore_index):
    row = tl.program_id(0).to(tl.int64)
    label = tl.load(LABELS + row).to(tl.int64)
    return row, LOGITS + row * V, label, label != ignore_index


@triton.jit
def _store_row_loss(LOSS, row_logits, row, label, valid, lse, sum_logits, V, z_loss, label_smoothing):
    label_in_range = valid & (label >= 0) & (label < V)
    label_logit = tl.load(row_logits + label, mask=label_in_range, other=0.0).to(tl.float32)
    loss = lse - (1.0 - label_smoothing) * label_logit - label_smoothing / V * sum_logits + z_loss * lse * lse
    tl.store(LOSS + row, tl.where(valid, loss, 0.0))


@triton.jit
def _row_grad_scale(GRAD_SCALE, row, valid, SCALE_PER_ROW: tl.constexpr):
    if SCALE_PER_ROW:
        scale = tl.load(GRAD_SCALE + row)
    else:
        scale = tl.load(GRAD_SCALE)
    return tl.where(valid, scale, 0.0)


@triton.jit
def _logit_grads(x, cols, label, lse, scale, V, z_loss, label_smoothing):
    grad = tl.exp(x - lse) * (1.0 + 2.0 * z_loss * lse) - label_smoothing / V
    grad = tl.where(cols == label, grad - (1.0 - label_smoothing), grad)
    return grad * scale


@triton.jit
def _cross_entropy_rows_one_pass_kernel(
    LOGITS, LABELS, GRAD_SCALE, LOSS, V, ignore_index, z_loss, label_smoothing,
    SCALE_PER_ROW: tl.constexpr, COMPUTE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row, row_logits, label, valid = _this_row(LOGITS, LABELS, V, ignore_index)
    cols = tl.arange(0, BLOCK_V)
    mask = cols < V
    x = tl.load(row_logits + cols, mask=mask, other=float("-inf"))  # [BLOCK_V], logits dtype
    x_wide = x.to(tl.float32)
    row_max = tl.max(x_wide, axis=0)
    sum_exp = tl.sum(tl.exp(x_wide - row_max), axis=0)
    sum_logits = tl.sum(tl.where(mask, x_wide, 0.0), axis=0)
    lse = row_max + tl.log(sum_exp)
    _store_row_loss(LOSS, row_logits, row, label, valid, lse, sum_logits, V, z_loss, label_smoothing)
    if COMPUTE_GRAD:
        scale = _row_grad_scale(GRAD_SCALE, row, valid, SCALE_PER_ROW)
        grad = _logit_grads(x_wide, cols, label, lse, scale, V, z_loss, label_smoothing)
        tl.store(row_logits + cols, grad.to(LOGITS.dtype.element_ty), mask=mask)


@triton.jit
def _cross_entropy_rows_two_pass_kernel(
    LOGITS, LABELS, GRAD_SCALE, LOSS, V, ignore_index, z_loss, label_smoothing,
    SCALE_PER_ROW: tl.constexpr, COMPUTE_GRAD: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row, row_logits, label, valid = _this_row(LOGITS, LABELS, V, ignore_index)
    max_so_far = float("-inf")
    sum_exp = 0.0
    sum_logits = 0.0
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        x = tl.load(row_logits + cols, mask=cols < V, other=float("-inf")).to(tl.float32)  # [BLOCK_V]
        new_max = tl.maximum(max_so_far, tl.max(x, axis=0))
        sum_exp = sum_exp * tl.exp(max_so_far - new_max) + tl.sum(tl.exp(x - new_max), axis=0)
        sum_logits += tl.sum(tl.where(cols < V, x, 0.0), axis=0)
        max_so_far = new_max
    lse = max_so_far + tl.log(sum_exp)
    _store_row_loss(LOSS, row_logits, row, label, valid, lse, sum_logits, V, z_loss, label_smoothing)
    if COMPUTE_GRAD:
        scale = _row_grad_scale(GRAD_SCALE, row, valid, SCALE_PER_ROW)
        for start in range(0, V, BLOCK_V):
            cols = start + tl.arange(0, BLOCK_V)
            mask = cols < V
            x = tl.load(row_logits + cols, mask=mask, other=0.0).to(tl.float32)
            grad = _logit_grads(x, cols, label, lse, scale, V, z_loss, label_smoothing)
            tl.store(row_logits + cols, grad.to(LOGITS.dtype.element_ty), mask=mask)


@dataclass(frozen=True, slots=True)
class RowsLaunch:
    """How the rows kernel runs, one program per row: one pass over a `block_v` tile, or two in `block_v` blocks."""

    one_pass: bool
    block_v: int
    num_warps: int


def plan_rows_launch(vocab: int, element_size: int, one_pass_max_row_bytes: int = ONE_PASS_MAX_ROW_BYTES) -> RowsLaunch:
    """One pass when the row's power-of-two tile fits `one_pass_max_row_bytes` (32 values per thread, the
    fastest on H100 at V 32000), else the two-pass launch of 4096-wide blocks, which no wider block or warp count
    beat."""
    tile = triton.next_power_of_2(vocab)
    if tile * element_size <= one_pass_max_row_bytes:
        return RowsLaunch(one_pass=True, block_v=tile, num_warps=max(1, min(32, tile // 1024)))
    return RowsLaunch(one_pass=False, block_v=_TWO_PASS_BLOCK_V, num_warps=8)


def cross_entropy_rows(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_rows: torch.Tensor,
    grad_scale: torch.Tensor | None,
    ignore_index: int,
    z_loss: float,
    label_smoothing: float,
    launch: RowsLaunch | None = None,
) -> None:
    """Writes each row's loss into `loss_rows` [N] and, if `grad_scale` ([1] or [N] float32) is given,
    d loss / d logits times that scale over `logits` [N, V] (contiguous), in place."""
    n_rows, vocab = logits.shape
    if launch is None:
        launch = plan_rows_launch(vocab, logits.element_size())
    if launch.one_pass and launch.block_v < vocab:
        raise ValueError(f"cross_entropy_rows: one-pass block_v {launch.block_v} is shorter than the row ({vocab})")
    compute_grad = grad_scale is not None
    flags = dict(
        SCALE_PER_ROW=compute_grad and grad_scale.numel() > 1, COMPUTE_GRAD=compute_grad,
        BLOCK_V=launch.block_v, num_warps=launch.num_warps,
    )
    scale = loss_rows if grad_scale is None else grad_scale
    kernel = _cross_entropy_rows_one_pass_kernel if launch.one_pass else _cross_entropy_rows_two_pass_kernel
    kernel[(n_rows,)](logits, labels, scale, loss_rows, vocab, ignore_index, z_loss, label_smoothing, **flags)
