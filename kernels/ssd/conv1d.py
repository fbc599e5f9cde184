"""Triton causal depthwise conv1d over packed documents (the Mamba2 block's short convolution).

Tokens before a document's start count as zeros, so the window never mixes documents. Backward is one kernel:
each token tile recomputes the pre-activation and its gradient through SiLU for its rows plus the WIDTH-1 rows
its dx reaches past them (so that gradient never goes to memory), and writes dx with per-tile partial weight and
bias grads. x and dx are addressed through their row stride, so the input can be a column slice of the Mamba2
projection and its gradient a slice of that projection's gradient; y and dy are contiguous `[T, C]`.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.interpreter import interpreting
from gristmill.kernels.ssd.conv1d_reference import check_conv1d_inputs
from gristmill.kernels.ssd.documents import stream_doc_start
from gristmill.kernels.ssd.layout import rows_in_place
from gristmill.kernels.ssd.tuning import INTERPRETER_BLOCK, candidates


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


def _forward_candidates() -> list[triton.Config]:
    return candidates(
        ({"BLOCK_T": 64, "BLOCK_C": 64}, 4, 1),
        ({"BLOCK_T": 128, "BLOCK_C": 64}, 8, 1),
        ({"BLOCK_T": 64, "BLOCK_C": 128}, 8, 1),
        ({"BLOCK_T": 128, "BLOCK_C": 32}, 4, 1),
        ({"BLOCK_T": 32, "BLOCK_C": 128}, 4, 1),
    )


def _backward_candidates() -> list[triton.Config]:
    return candidates(
        ({"BLOCK_C": 32}, 4, 1),
        ({"BLOCK_C": 32}, 8, 1),
        ({"BLOCK_C": 64}, 8, 1),
        ({"BLOCK_C": 16}, 4, 1),
        ({"BLOCK_C": 16}, 2, 1),
    )


@triton.autotune(configs=_forward_candidates(), key=["CHANNELS", "WIDTH", "HAS_BIAS", "SILU"])
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
    offs_t = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_t, mask_c = offs_t < T, offs_c < CHANNELS
    first = tl.load(doc_start + offs_t, mask=mask_t, other=0)
    acc = _conv_window(x, weight, bias, first, offs_t, offs_c, mask_t, mask_c, stride_x,
                       WIDTH, HAS_BIAS, BLOCK_T, BLOCK_C)  # fmt: skip
    if SILU:
        acc = acc * tl.sigmoid(acc)
    ptrs = _tile_offsets(offs_t, offs_c, CHANNELS)
    tl.store(y + ptrs, acc.to(y.dtype.element_ty), mask=mask_t[:, None] & mask_c[None, :])


@triton.autotune(configs=_backward_candidates(), key=["CHANNELS", "WIDTH", "HAS_BIAS", "SILU"])
@triton.jit(do_not_specialize=["T"])
def _conv1d_bwd_kernel(
    x,
    weight,
    bias,
    doc_start,
    dy,
    dx,
    dweight_partial,
    dbias_partial,
    T,
    stride_x,
    stride_dx,
    CHANNELS: tl.constexpr,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """The whole backward in one pass. dx_t needs the pre-activation gradient of tokens t..t+WIDTH-1, so a
    tile of BLOCK_T rows recomputes that gradient for all its rows but owns (writes dx and column sums for) only
    the first BLOCK_T - WIDTH + 1: the rest is the halo its dx reaches, owned by the next tile. The gradient
    then never goes to memory; the taps read it shifted through `tl.gather` along the token axis."""
    owned = BLOCK_T - (WIDTH - 1)
    block_t = tl.program_id(0)
    rows = tl.arange(0, BLOCK_T)
    offs_t = block_t * owned + rows
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_t, mask_c = offs_t < T, offs_c < CHANNELS
    own = mask_t & (rows < owned)
    grad = tl.load(dy + _tile_offsets(offs_t, offs_c, CHANNELS), mask=mask_t[:, None] & mask_c[None, :], other=0.0)
    grad = grad.to(tl.float32)  # [BLOCK_T, BLOCK_C]
    first = tl.load(doc_start + offs_t, mask=mask_t, other=0)
    if SILU:
        pre = _conv_window(x, weight, bias, first, offs_t, offs_c, mask_t, mask_c, stride_x,
                           WIDTH, HAS_BIAS, BLOCK_T, BLOCK_C)  # fmt: skip
        gate = tl.sigmoid(pre)
        grad = grad * gate * (1 + pre * (1 - gate))
    if HAS_BIAS:
        dbias = tl.sum(tl.where(own[:, None], grad, 0.0), axis=0)
        tl.store(dbias_partial + block_t * CHANNELS + offs_c, dbias, mask=mask_c)
    acc = tl.zeros([BLOCK_T, BLOCK_C], dtype=tl.float32)
    for k in tl.static_range(WIDTH):
        shift = WIDTH - 1 - k
        w_k = tl.load(weight + offs_c * WIDTH + k, mask=mask_c, other=0.0).to(tl.float32)
        # dx_t takes grad_{t+shift} when t+shift is in t's document
        dst = offs_t + shift
        dst_ok = own & (dst < T)
        dst_ok &= tl.load(doc_start + dst, mask=dst_ok, other=0) <= offs_t
        shifted = grad
        if shift > 0:
            source_row = tl.broadcast_to(tl.minimum(rows + shift, BLOCK_T - 1)[:, None], (BLOCK_T, BLOCK_C))
            shifted = tl.gather(grad, source_row, axis=0)
        acc += tl.where(dst_ok[:, None], shifted, 0.0) * w_k[None, :]
        # dweight_k sums grad_t * x_{t-shift} over owned tokens whose window reaches t-shift
        src = offs_t - shift
        src_ok = own & (src >= first)
        x_k = tl.load(x + _tile_offsets(src, offs_c, stride_x), mask=src_ok[:, None] & mask_c[None, :], other=0.0)
        dweight_k = tl.sum(grad * x_k.to(tl.float32), axis=0)
        tl.store(dweight_partial + (block_t * CHANNELS + offs_c) * WIDTH + k, dweight_k, mask=mask_c)
    tl.store(dx + _tile_offsets(offs_t, offs_c, stride_dx), acc.to(dx.dtype.element_ty), mask=own[:, None] & mask_c[None, :])


_BACKWARD_BLOCK_T = 128


def _backward_block_t() -> int:
    """Rows per backward tile: fixed rather than tuned, since it sets how many partial sums the host adds up."""
    return INTERPRETER_BLOCK if interpreting() else _BACKWARD_BLOCK_T


def conv1d_fwd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, doc_start: torch.Tensor, silu: bool
) -> torch.Tensor:
    """y `[T, C]` contiguous in x's dtype, from x `[T, C]` with contiguous rows (any row stride)."""
    T, channels = x.shape
    y = torch.empty(T, channels, device=x.device, dtype=x.dtype)

    def grid(meta: dict) -> tuple[int, int]:
        return triton.cdiv(T, meta["BLOCK_T"]), triton.cdiv(channels, meta["BLOCK_C"])

    _conv1d_fwd_kernel[grid](
        x, weight, bias, doc_start, y, T, x.stride(0), CHANNELS=channels, WIDTH=weight.shape[1],
        HAS_BIAS=bias is not None, SILU=silu,
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
    width = weight.shape[1]
    block_t = _backward_block_t()
    if width >= block_t:
        raise ValueError(f"conv1d width {width} must be below the backward tile of {block_t} tokens")
    n_tiles = triton.cdiv(T, block_t - (width - 1))
    dweight_partial = torch.empty(n_tiles, channels, width, device=x.device, dtype=torch.float32)
    dbias_partial = None if bias is None else torch.empty(n_tiles, channels, device=x.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int, int]:
        return n_tiles, triton.cdiv(channels, meta["BLOCK_C"])

    _conv1d_bwd_kernel[grid](
        x, weight, bias, doc_start, dy, dx, dweight_partial, dbias_partial, T, x.stride(0), dx.stride(0),
        CHANNELS=channels, WIDTH=width, HAS_BIAS=bias is not None, SILU=silu, BLOCK_T=block_t,
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
        dx = torch.empty(x.shape, device=x.device, dtype=x.dtype)
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
