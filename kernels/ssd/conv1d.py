"""Triton causal depthwise conv1d over packed documents (the Mamba2 block's short convolution).

Tokens before a document's start count as zeros, so the window never mixes documents. Both kernels walk tokens in
order, one program per (token block, channel block), with the window's last three x rows carried in registers:
each row of x is read once and every thread owns whole channels, and Triton's loop pipelining copies the rows of
the next tokens into shared memory while the walk computes. The backward recomputes the pre-activation,
forms its gradient through SiLU and emits dx three tokens behind, so that gradient never goes to memory, and sums
the weight and bias gradients of its channels in registers (no cross-thread reductions, one partial row per
program). x and dx are addressed through their row stride, so the input can be a column slice of the Mamba2
projection and its gradient a slice of that projection's gradient; y and dy are contiguous `[T, C]`.
"""

from collections.abc import Callable

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from gristmill.kernels.interpreter import interpreting
from gristmill.kernels.ssd.conv1d_reference import check_conv1d_inputs
from gristmill.kernels.ssd.documents import stream_doc_start
from gristmill.kernels.ssd.layout import empty_rows_like, rows_in_place
from gristmill.kernels.ssd.tuning import INTERPRETER_BLOCK

MAX_CONV_WIDTH = 4
"""The walks carry the window as MAX_CONV_WIDTH - 1 rows, so they take up to this many taps (as Mamba2's d_conv
and the causal-conv1d CUDA kernels do)."""
MAX_WIDTH = tl.constexpr(MAX_CONV_WIDTH)

_FAST_SIGMOID = tl.constexpr(not interpreting())
"""On the GPU SiLU's gate takes the approximate exp and divide: half the instructions of tl.sigmoid's
range-checked ones, a few ulp apart. The interpreter has no libdevice, so it keeps tl.sigmoid."""


def _walk_candidates() -> list[triton.Config]:
    """Tokens, channels and warps per program, how many tokens the walk unrolls (a multiple of 3 turns the window's
    register rotation into renaming) and the loop's stages: Triton copies the rows of the next STAGES - 1 unrolled
    steps into shared memory (cp.async) while the walk computes, so each program keeps rows in flight without
    holding them in registers. On an H100 at T 65536, C 2304 these two were the autotuner's picks out of seven
    (backward 496 -> 372 us, forward 255 -> 239 us against two rows carried ahead in registers), both checked
    there against the float32 reference. Under the interpreter one config: blocks of 16 tokens, so the tests'
    short documents cross block edges, and 32 channels, since its time goes per token and channel block."""
    if interpreting():
        small = {"BLOCK_T": INTERPRETER_BLOCK, "BLOCK_C": 2 * INTERPRETER_BLOCK, "UNROLL": 1, "STAGES": 1}
        return [triton.Config(small, num_warps=1, num_stages=1)]
    return [
        triton.Config({"BLOCK_T": block_t, "BLOCK_C": 256, "UNROLL": 3, "STAGES": 3}, num_warps=2, num_stages=1)
        for block_t in (256, 128)
    ]


_WALK_CANDIDATES = _walk_candidates()


@triton.jit
def _sigmoid(x):
    if _FAST_SIGMOID:
        return libdevice.fast_dividef(1.0, 1.0 + libdevice.fast_expf(-x))
    return tl.sigmoid(x)


@triton.jit
def _tap(weight, offs_c, mask_c, WIDTH: tl.constexpr, SHIFT: tl.constexpr):
    """The weight on the token SHIFT steps back, in float32; zero past the kernel's width."""
    if SHIFT < WIDTH:
        return tl.load(weight + offs_c * WIDTH + (WIDTH - 1 - SHIFT), mask=mask_c, other=0.0).to(tl.float32)
    return tl.zeros(offs_c.shape, dtype=tl.float32)


@triton.jit
def _row_mask(token, lowest, T, mask_c):
    """The channels of token `token` when lowest <= token < T (a per-channel vector: the interpreter rejects a
    block mask and-ed with a scalar one)."""
    tokens = token + tl.zeros_like(mask_c.to(tl.int32))
    return mask_c & (tokens >= lowest) & (tokens < T)


@triton.jit
def _row(ptr, token, stride, offs_c, mask_c, T):
    """Token `token`'s row of channels in the tensor's dtype; zeros outside [0, T)."""
    mask = _row_mask(token, 0, T, mask_c)
    return tl.load(ptr + tl.cast(token, tl.int64) * stride + offs_c, mask=mask, other=0.0)


@triton.jit
def _walk_start(x, weight, bias, T, stride_x, CHANNELS: tl.constexpr, WIDTH: tl.constexpr,
                HAS_BIAS: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr):
    """This program's channels, token range, taps (shift 0 to 3) and bias, and x of the three tokens before its
    first one, all in float32."""
    offs_c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    mask_c = offs_c < CHANNELS
    block_start = tl.program_id(0) * BLOCK_T
    block_end = tl.minimum(block_start + BLOCK_T, T)
    w0 = _tap(weight, offs_c, mask_c, WIDTH, 0)
    w1 = _tap(weight, offs_c, mask_c, WIDTH, 1)
    w2 = _tap(weight, offs_c, mask_c, WIDTH, 2)
    w3 = _tap(weight, offs_c, mask_c, WIDTH, 3)
    pre_init = tl.zeros([BLOCK_C], dtype=tl.float32)
    if HAS_BIAS:
        pre_init += tl.load(bias + offs_c, mask=mask_c, other=0.0).to(tl.float32)
    x1 = _row(x, block_start - 1, stride_x, offs_c, mask_c, T).to(tl.float32)
    x2 = _row(x, block_start - 2, stride_x, offs_c, mask_c, T).to(tl.float32)
    x3 = _row(x, block_start - 3, stride_x, offs_c, mask_c, T).to(tl.float32)
    return offs_c, mask_c, block_start, block_end, w0, w1, w2, w3, pre_init, x1, x2, x3


@triton.jit
def _clip_window(x1, x2, x3, u, first):
    """x of tokens u-1 .. u-3 with those before u's document start (`first`) zeroed; since starts only grow along
    the walk, a zeroed row stays zero for every later token."""
    return tl.where(u - 1 >= first, x1, 0.0), tl.where(u - 2 >= first, x2, 0.0), tl.where(u - 3 >= first, x3, 0.0)


@triton.autotune(configs=_WALK_CANDIDATES, key=["CHANNELS", "WIDTH", "HAS_BIAS", "SILU"])
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
    UNROLL: tl.constexpr,
    STAGES: tl.constexpr,
):
    offs_c, mask_c, block_start, block_end, w0, w1, w2, w3, pre_init, x1, x2, x3 = _walk_start(
        x, weight, bias, T, stride_x, CHANNELS, WIDTH, HAS_BIAS, BLOCK_T, BLOCK_C
    )
    for u in tl.range(block_start, block_end, loop_unroll_factor=UNROLL, num_stages=STAGES):
        x0 = _row(x, u, stride_x, offs_c, mask_c, T).to(tl.float32)
        first = tl.load(doc_start + u)
        if first > u - (MAX_WIDTH - 1):  # a document starts inside the window: rare
            x1, x2, x3 = _clip_window(x1, x2, x3, u, first)
        out = pre_init + w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
        if SILU:
            out = out * _sigmoid(out)
        tl.store(y + tl.cast(u, tl.int64) * CHANNELS + offs_c, out.to(y.dtype.element_ty), mask=mask_c)
        x3, x2, x1 = x2, x1, x0


@triton.autotune(configs=_WALK_CANDIDATES, key=["CHANNELS", "WIDTH", "HAS_BIAS", "SILU"])
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
    stride_partial,
    CHANNELS: tl.constexpr,
    WIDTH: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    SILU: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
    UNROLL: tl.constexpr,
    STAGES: tl.constexpr,
):
    """At token u the walk forms the pre-activation gradient of u and emits dx for t = u - 3, which needs the
    gradients of t .. t + 3 (carried for u-1 .. u-3); it walks three tokens past its block for them, and those
    tokens stay out of its weight and bias sums."""
    offs_c, mask_c, block_start, block_end, w0, w1, w2, w3, pre_init, x1, x2, x3 = _walk_start(
        x, weight, bias, T, stride_x, CHANNELS, WIDTH, HAS_BIAS, BLOCK_T, BLOCK_C
    )
    # gradients of u-1 .. u-3: zero before the block, whose dx rows belong to the previous program
    g1 = tl.zeros([BLOCK_C], dtype=tl.float32)
    g2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    g3 = tl.zeros([BLOCK_C], dtype=tl.float32)
    first1 = tl.load(doc_start + block_start - 1, mask=block_start >= 1, other=0)
    first2 = tl.load(doc_start + block_start - 2, mask=block_start >= 2, other=0)
    dw0 = tl.zeros([BLOCK_C], dtype=tl.float32)
    dw1 = tl.zeros([BLOCK_C], dtype=tl.float32)
    dw2 = tl.zeros([BLOCK_C], dtype=tl.float32)
    dw3 = tl.zeros([BLOCK_C], dtype=tl.float32)
    db = tl.zeros([BLOCK_C], dtype=tl.float32)
    for u in tl.range(block_start, block_end + MAX_WIDTH - 1, loop_unroll_factor=UNROLL, num_stages=STAGES):
        x0 = _row(x, u, stride_x, offs_c, mask_c, T).to(tl.float32)
        grad = _row(dy, u, CHANNELS, offs_c, mask_c, T).to(tl.float32)
        first = tl.load(doc_start + u, mask=u < T, other=u)
        t = u - (MAX_WIDTH - 1)
        # dx_t takes the gradient of t + s when t + s is in t's document
        near1, near2 = g1, g2
        if first > t:  # a document starts inside the window: rare, so the common path runs without masks
            x1, x2, x3 = _clip_window(x1, x2, x3, u, first)
            near1 = tl.where(first1 <= t, g1, 0.0)
            near2 = tl.where(first2 <= t, g2, 0.0)
        if SILU:
            pre = pre_init + w0 * x0 + w1 * x1 + w2 * x2 + w3 * x3
            gate = _sigmoid(pre)
            grad = grad * gate * (1 + pre * (1 - gate))
        if u < block_end:
            dw0 += grad * x0
            dw1 += grad * x1
            dw2 += grad * x2
            dw3 += grad * x3
            db += grad
        dx_t = w0 * g3 + w1 * near2 + w2 * near1
        if first <= t:
            dx_t += w3 * grad
        dx_ptrs = dx + tl.cast(t, tl.int64) * stride_dx + offs_c
        tl.store(dx_ptrs, dx_t.to(dx.dtype.element_ty), mask=_row_mask(t, block_start, T, mask_c))
        x3, x2, x1 = x2, x1, x0
        g3, g2, g1 = g2, g1, grad
        first2, first1 = first1, first
    block_partial = tl.program_id(0).to(tl.int64) * stride_partial
    partial = block_partial + offs_c * WIDTH + WIDTH - 1
    tl.store(dweight_partial + partial, dw0, mask=mask_c)
    if WIDTH > 1:
        tl.store(dweight_partial + partial - 1, dw1, mask=mask_c)
    if WIDTH > 2:
        tl.store(dweight_partial + partial - 2, dw2, mask=mask_c)
    if WIDTH > 3:
        tl.store(dweight_partial + partial - 3, dw3, mask=mask_c)
    if HAS_BIAS:
        tl.store(dbias_partial + block_partial + offs_c, db, mask=mask_c)


def _blocks_grid(T: int, channels: int) -> Callable[[dict], tuple[int, int]]:
    """The launch grid of (token block, channel block) programs for whichever config the autotuner runs."""
    return lambda meta: (triton.cdiv(T, meta["BLOCK_T"]), triton.cdiv(channels, meta["BLOCK_C"]))


def conv1d_fwd(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, doc_start: torch.Tensor, silu: bool
) -> torch.Tensor:
    """y `[T, C]` contiguous in x's dtype, from x `[T, C]` with contiguous rows (any row stride)."""
    T, channels = x.shape
    if weight.shape[1] > MAX_CONV_WIDTH:
        raise ValueError(f"conv1d width {weight.shape[1]} is above the {MAX_CONV_WIDTH} taps the kernels carry")
    y = torch.empty(T, channels, device=x.device, dtype=x.dtype)

    _conv1d_fwd_kernel[_blocks_grid(T, channels)](
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
    # one row per token block: the weight's partial sums, then the bias's, so one reduction sums both
    weight_columns = channels * width
    row = weight_columns + (0 if bias is None else channels)
    shortest_block = min(config.kwargs["BLOCK_T"] for config in _conv1d_bwd_kernel.configs)
    partial = torch.empty(triton.cdiv(T, shortest_block), row, device=x.device, dtype=torch.float32)

    _conv1d_bwd_kernel[_blocks_grid(T, channels)](
        x, weight, bias, doc_start, dy, dx, partial, partial[:, weight_columns:], T, x.stride(0), dx.stride(0), row,
        CHANNELS=channels, WIDTH=width, HAS_BIAS=bias is not None, SILU=silu,
    )  # fmt: skip
    # one partial row per token block of the config the autotuner ran; rows past them were never written
    sums = partial[: triton.cdiv(T, _conv1d_bwd_kernel.best_config.kwargs["BLOCK_T"])].sum(0)
    dweight = sums[:weight_columns].view(channels, width).to(weight.dtype)
    return dweight, None if bias is None else sums[weight_columns:].to(bias.dtype)


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
