"""Triton causal depthwise conv1d over packed documents (the Mamba2 block's short convolution).

Tokens before a document's start count as zeros, so the window never mixes documents. Backward runs two
kernels: one recomputes the pre-activation in registers and writes the gradient through SiLU (with per-block
partial bias grads), the next gives dx and per-block partial weight grads. x and dx are addressed through
their row stride, so the input can be a column slice of the Mamba2 projection and its gradient a slice of
that projection's gradient; y, dy and the pre-activation gradient are contiguous `[T, C]`.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.conv1d_reference import check_conv1d_inputs
from gristmill.kernels.ssd.documents import stream_doc_start
from gristmill.kernels.ssd.layout import empty_rows_like, rows_in_place


@triton.jit
def _tile(T, CHANNELS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """A (token block, channel block) program's block index, tokens, channels and which of them exist."""
    block_t = tl.program_id(0)
    offs_t = block_t * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    return block_t, offs_t, offs_c, offs_t < T, offs_c < CHANNELS


@triton.jit
def _tile_offsets(offs_t, offs_c, stride_t):
    """Element offsets of a [BLOCK_T, BLOCK_C] tile of a `[T, C]` tensor whose rows lie `stride_t` apart."""
    return offs_t.to(tl.int64)[:, None] * stride_t + offs_c[None, :]


@triton.jit
def _conv_window(x, weight, bias, first, offs_t, offs_c, mask_t, mask_c, stride_x,
                 WIDTH: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """The pre-activation of a [BLOCK_T, BLOCK_C] tile in float32; taps before `first` (the document's
    first token) read as zeros."""
    acc = tl.zeros([BLOCK_T, BLOCK_C], dtype=tl.float32)
    if HAS_BIAS:
        acc += tl.load(bias + offs_c, mask=mask_c, other=0.0).to(tl.float32)[None, :]
    for k in tl.static_range(WIDTH):
        src = offs_t - (WIDTH - 1 - k)
        inside = mask_t & (src >= first)
        x_k = tl.load(x + _tile_offsets(src, offs_c, stride_x), mask=inside[:, None] & mask_c[None, :], other=0.0)
        w_k = tl.load(weight + offs_c * WIDTH + k, mask=mask_c, other=0.0).to(tl.float32)
        acc += x_k.to(tl.float32) * w_k[None, :]
    return acc


@triton.jit(do_not_specialize=["T"])
def _conv1d_fwd_kernel(
    x,
    weight,
    bias,
    doc_start,
    y,
    T,
    stride_x,
    CHANNELS: tl.constexpr,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    _, offs_t, offs_c, mask_t, mask_c = _tile(T, CHANNELS, BLOCK_T, BLOCK_C)
    first = tl.load(doc_start + offs_t, mask=mask_t, other=0)
    acc = _conv_window(x, weight, bias, first, offs_t, offs_c, mask_t, mask_c, stride_x,
                       WIDTH, HAS_BIAS, BLOCK_T, BLOCK_C)  # fmt: skip
    if SILU:
        acc = acc * tl.sigmoid(acc)
    ptrs = _tile_offsets(offs_t, offs_c, CHANNELS)
    tl.store(y + ptrs, acc.to(y.dtype.element_ty), mask=mask_t[:, None] & mask_c[None, :])


@triton.jit(do_not_specialize=["T"])
def _conv1d_dpre_kernel(
    x,
    weight,
    bias,
    doc_start,
    dy,
    dpre,
    dbias_partial,
    T,
    stride_x,
    CHANNELS: tl.constexpr,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """dL/d(pre-activation) in float32, recomputing the pre-activation for SiLU's derivative in registers,
    plus this block's partial bias gradient."""
    block_t, offs_t, offs_c, mask_t, mask_c = _tile(T, CHANNELS, BLOCK_T, BLOCK_C)
    mask = mask_t[:, None] & mask_c[None, :]
    ptrs = _tile_offsets(offs_t, offs_c, CHANNELS)
    grad = tl.load(dy + ptrs, mask=mask, other=0.0).to(tl.float32)
    if SILU:
        first = tl.load(doc_start + offs_t, mask=mask_t, other=0)
        pre = _conv_window(x, weight, bias, first, offs_t, offs_c, mask_t, mask_c, stride_x,
                           WIDTH, HAS_BIAS, BLOCK_T, BLOCK_C)  # fmt: skip
        gate = tl.sigmoid(pre)
        grad = grad * gate * (1 + pre * (1 - gate))
    tl.store(dpre + ptrs, grad, mask=mask)
    if HAS_BIAS:
        tl.store(dbias_partial + block_t * CHANNELS + offs_c, tl.sum(grad, axis=0), mask=mask_c)


@triton.jit(do_not_specialize=["T"])
def _conv1d_bwd_kernel(
    x,
    weight,
    dpre,
    doc_start,
    dx,
    dweight_partial,
    T,
    stride_x,
    stride_dx,
    CHANNELS: tl.constexpr,
    WIDTH: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    block_t, offs_t, offs_c, mask_t, mask_c = _tile(T, CHANNELS, BLOCK_T, BLOCK_C)
    first = tl.load(doc_start + offs_t, mask=mask_t, other=0)
    mask = mask_t[:, None] & mask_c[None, :]
    grad = tl.load(dpre + _tile_offsets(offs_t, offs_c, CHANNELS), mask=mask, other=0.0)
    acc = tl.zeros([BLOCK_T, BLOCK_C], dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        shift = WIDTH - 1 - k
        w_k = tl.load(weight + offs_c * WIDTH + k, mask=mask_c, other=0.0).to(tl.float32)
        # dx_t takes dpre_{t+shift} when t+shift is in t's document
        dst = offs_t + shift
        dst_ok = (dst < T) & (tl.load(doc_start + dst, mask=dst < T, other=T) <= offs_t)
        g = tl.load(dpre + _tile_offsets(dst, offs_c, CHANNELS), mask=dst_ok[:, None] & mask_c[None, :], other=0.0)
        acc += g.to(tl.float32) * w_k[None, :]
        # dweight_k sums dpre_t * x_{t-shift} over tokens whose window reaches t-shift
        src = offs_t - shift
        src_ok = mask_t & (src >= first)
        x_k = tl.load(x + _tile_offsets(src, offs_c, stride_x), mask=src_ok[:, None] & mask_c[None, :], other=0.0)
        tl.store(
            dweight_partial + (block_t * CHANNELS + offs_c) * WIDTH + k,
            tl.sum(grad.to(tl.float32) * x_k.to(tl.float32), axis=0),
            mask=mask_c,
        )
    tl.store(dx + _tile_offsets(offs_t, offs_c, stride_dx), acc.to(dx.dtype.element_ty), mask=mask)


_BLOCK_T = 64
_BLOCK_C = 64


def _grid(T: int, channels: int) -> tuple[int, int]:
    return triton.cdiv(T, _BLOCK_T), triton.cdiv(channels, _BLOCK_C)


def conv1d_fwd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, doc_start: torch.Tensor, silu: bool
) -> torch.Tensor:
    """y `[T, C]` contiguous in x's dtype, from x `[T, C]` with contiguous rows (any row stride)."""
    T, channels = x.shape
    y = torch.empty(T, channels, device=x.device, dtype=x.dtype)
    _conv1d_fwd_kernel[_grid(T, channels)](
        x, weight, bias, doc_start, y, T, x.stride(0), CHANNELS=channels, WIDTH=weight.shape[1],
        HAS_BIAS=bias is not None, SILU=silu, BLOCK_T=_BLOCK_T, BLOCK_C=_BLOCK_C,
    )  # fmt: skip
    return y


def conv1d_bwd(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    doc_start: torch.Tensor,
    dy: torch.Tensor,
    silu: bool,
    dx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Writes x's gradient into `dx` (`[T, C]`, contiguous rows, any row stride: it may be a slice of a wider
    gradient) from the contiguous output gradient `dy`; returns the weight and bias gradients."""
    T, channels = x.shape
    grid = _grid(T, channels)
    n_blocks = grid[0]
    dpre = torch.empty(T, channels, device=x.device, dtype=torch.float32)
    dbias_partial = None if bias is None else torch.empty(n_blocks, channels, device=x.device, dtype=torch.float32)
    _conv1d_dpre_kernel[grid](
        x, weight, bias, doc_start, dy, dpre, dbias_partial, T, x.stride(0), CHANNELS=channels,
        WIDTH=weight.shape[1], HAS_BIAS=bias is not None, SILU=silu, BLOCK_T=_BLOCK_T, BLOCK_C=_BLOCK_C,
    )  # fmt: skip
    dweight_partial = torch.empty(n_blocks, channels, weight.shape[1], device=x.device, dtype=torch.float32)
    _conv1d_bwd_kernel[grid](
        x, weight, dpre, doc_start, dx, dweight_partial, T, x.stride(0), dx.stride(0), CHANNELS=channels,
        WIDTH=weight.shape[1], BLOCK_T=_BLOCK_T, BLOCK_C=_BLOCK_C,
    )  # fmt: skip
    dweight = dweight_partial.sum(0).to(weight.dtype)
    dbias = None if bias is None else dbias_partial.sum(0).to(bias.dtype)
    return dweight, dbias


class CausalConv1dFunction(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        doc_start: torch.Tensor,
        silu: bool,
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight, bias, doc_start)
        ctx.silu = silu
        return conv1d_fwd(x, weight, bias, doc_start, silu)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, dy: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight, bias, doc_start = ctx.saved_tensors
        dx = empty_rows_like(x)
        dweight, dbias = conv1d_bwd(x, weight, bias, doc_start, dy.contiguous(), ctx.silu, dx)
        return dx, dweight, dbias, None, None


def causal_conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    cu_seqlens: torch.Tensor | None = None,
    activation: str | None = "silu",
) -> torch.Tensor:
    """Causal depthwise conv1d over packed documents: x `[T, C]`, weight `[C, W]`, bias `[C]`.

    y_t = act(bias + sum_k weight[:, k] x_{t-W+1+k}), with tokens before the document's start as zeros;
    `activation` is "silu" or None. x is read in place when its rows are contiguous (a column slice).
    """
    check_conv1d_inputs(x, weight, bias, cu_seqlens, activation)
    return CausalConv1dFunction.apply(
        rows_in_place(x),
        weight.contiguous(),
        None if bias is None else bias.contiguous(),
        stream_doc_start(cu_seqlens, x.shape[0], x.device),
        activation == "silu",
    )
