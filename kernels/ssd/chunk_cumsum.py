"""Log-decay within each chunk: a_t = A * sum of dt over the chunk's tokens up to t, and its backward.

Everything per token is stored head-major, `[H, T]` fp32 (`a`, and dt itself): the later kernels read a
block of consecutive tokens of one head, which is then one contiguous load instead of one per token. Each
chunk's total decay exp(a_last) is also kept, `[H, num_chunks]`, for the state passing.

With RAW_PARAMS the Mamba2 mixer's parameters arrive as it stores them: dt raw (a column slice of the in_proj
output) with a bias, and A as A_log. The step softplus(dt + dt_bias) and the rate -exp(A_log) are formed here in
fp32, and the backward returns the gradients of raw dt, dt_bias (summed per chunk) and A_log: on the host that was
eight elementwise launches, a sum and an fp32 `[T, H]` copy per layer.
"""

from typing import NamedTuple

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.blocks import accumulate
from gristmill.kernels.ssd.documents import ChunkPlan


@triton.jit
def _chunk_head_program(chunk_len):
    """The chunk and head of a (chunk, head) program, and how many real tokens the chunk holds."""
    c = tl.program_id(0)
    h = tl.program_id(1)
    return c, h, tl.load(chunk_len + c)


@triton.jit
def _chunk_slots(chunk_start, c, length, CHUNK: tl.constexpr):
    """Token index of each of the chunk's CHUNK slots, and which slots hold a real token."""
    t = tl.load(chunk_start + c).to(tl.int64) + tl.arange(0, CHUNK)
    return t, tl.arange(0, CHUNK) < length


@triton.jit
def _softplus(x):
    """F.softplus(x) (threshold 20) in float32. log1p(e) is taken as log(u) * e / (u - 1) with u = 1 + e, exact
    to an ulp where log(1 + e) would round e away (the interpreter has no libdevice.log1p); e itself where u
    rounds to 1."""
    e = tl.exp(tl.minimum(x, 20.0))
    u = 1.0 + e
    rounded_away = u == 1.0
    log1p = tl.log(u) * (e / tl.where(rounded_away, 1.0, u - 1.0))
    return tl.where(x > 20.0, x, tl.where(rounded_away, e, log1p))


@triton.jit
def _rate(A, h, RAW_PARAMS: tl.constexpr):
    """Head h's A in float32, from A_log with RAW_PARAMS."""
    rate = tl.load(A + h).to(tl.float32)
    if RAW_PARAMS:
        rate = -tl.exp(rate)
    return rate


@triton.jit(do_not_specialize=["T", "NUM_CHUNKS", "stride_dt"])
def _ssd_fwd_kernel_cumsum(
    dt,
    dt_bias,
    A,
    a,
    dt_by_head,
    chunk_decay,
    chunk_start,
    chunk_len,
    T,
    NUM_CHUNKS,
    stride_dt,
    H: tl.constexpr,
    CHUNK: tl.constexpr,
    RAW_PARAMS: tl.constexpr,
):
    c, h, length = _chunk_head_program(chunk_len)
    if length <= 0:
        return
    t, mask = _chunk_slots(chunk_start, c, length, CHUNK)
    dt_t = tl.load(dt + t * stride_dt + h, mask=mask, other=0.0).to(tl.float32)
    if RAW_PARAMS:
        dt_t = tl.where(mask, _softplus(dt_t + tl.load(dt_bias + h).to(tl.float32)), 0.0)
    a_t = tl.cumsum(dt_t * _rate(A, h, RAW_PARAMS), axis=0)
    tl.store(a + h * T + t, a_t, mask=mask)
    tl.store(dt_by_head + h * T + t, dt_t, mask=mask)
    tl.store(chunk_decay + h * NUM_CHUNKS + c, tl.exp(tl.sum(tl.where(tl.arange(0, CHUNK) == length - 1, a_t, 0.0))))


@triton.jit(do_not_specialize=["T", "NUM_CHUNKS", "stride_dt", "stride_ddt"])
def _ssd_bwd_kernel_cumsum(
    dt_by_head,
    dt,
    dt_bias,
    A,
    da,
    dchunk_decay,
    chunk_decay,
    ddt_direct,
    ddt,
    ddt_bias,
    dA,
    chunk_start,
    chunk_len,
    T,
    NUM_CHUNKS,
    stride_dt,
    stride_ddt,
    H: tl.constexpr,
    CHUNK: tl.constexpr,
    RAW_PARAMS: tl.constexpr,
):
    c, h, length = _chunk_head_program(chunk_len)
    if length <= 0:
        return
    t, mask = _chunk_slots(chunk_start, c, length, CHUNK)
    da_t = tl.load(da + h * T + t, mask=mask, other=0.0)
    # the chunk's decay is exp(a_last): its gradient reaches a_last times the decay
    decay_offset = h * NUM_CHUNKS + c
    dlog_decay = tl.load(dchunk_decay + decay_offset) * tl.load(chunk_decay + decay_offset)
    da_t += tl.where(tl.arange(0, CHUNK) == length - 1, dlog_decay, 0.0)
    # gradient of the per-token increment dt*A: the sum of da over the token and all later ones in the chunk
    dinc = tl.sum(da_t, axis=0) - tl.cumsum(da_t, axis=0) + da_t
    dt_t = tl.load(dt_by_head + h * T + t, mask=mask, other=0.0)
    A_h = _rate(A, h, RAW_PARAMS)
    grad = tl.load(ddt_direct + h * T + t, mask=mask, other=0.0) + A_h * dinc
    if RAW_PARAMS:  # softplus' derivative
        raw = tl.load(dt + t * stride_dt + h, mask=mask, other=0.0).to(tl.float32)
        grad = tl.where(mask, grad * tl.sigmoid(raw + tl.load(dt_bias + h).to(tl.float32)), 0.0)
        accumulate(ddt_bias + h, tl.sum(grad, axis=0))
    tl.store(ddt + t * stride_ddt + h, grad.to(ddt.dtype.element_ty), mask=mask)
    dA_h = tl.sum(dt_t * dinc, axis=0)
    if RAW_PARAMS:  # A = -exp(A_log): dA_log = dA * A
        dA_h *= A_h
    accumulate(dA + h, dA_h)


def chunk_cumsum_fwd(
    dt: torch.Tensor, A: torch.Tensor, plan: ChunkPlan, dt_bias: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns `a` and the step dt, both `[H, T]` fp32, and each chunk's decay `[H, num_chunks]` (spare chunks
    unwritten). dt `[T, H]` has contiguous rows at any row stride; with `dt_bias` `[H]`, dt and A are Mamba2's
    raw parameters: the step is softplus(dt + dt_bias) and A is A_log, the rate -exp(A_log)."""
    T, H = dt.shape
    a = torch.empty(H, T, device=dt.device, dtype=torch.float32)
    dt_by_head = torch.empty_like(a)
    chunk_decay = torch.empty(H, plan.num_chunks, device=dt.device, dtype=torch.float32)
    _ssd_fwd_kernel_cumsum[(plan.num_chunks, H)](
        dt, dt_bias, A, a, dt_by_head, chunk_decay, plan.chunk_start, plan.chunk_len, T, plan.num_chunks, dt.stride(0),
        H=H, CHUNK=plan.chunk_size, RAW_PARAMS=dt_bias is not None,
    )  # fmt: skip
    return a, dt_by_head, chunk_decay


class CumsumGradients(NamedTuple):
    ddt: torch.Tensor
    """In dt's dtype, `[T, H]`: the raw dt's gradient when the forward took a bias."""
    dA: torch.Tensor
    """In A's dtype: A_log's gradient when the forward took a bias."""
    ddt_bias: torch.Tensor | None
    """fp32 `[H]`, None without a bias."""


def chunk_cumsum_bwd(
    dt: torch.Tensor,
    dt_by_head: torch.Tensor,
    A: torch.Tensor,
    da: torch.Tensor,
    dchunk_decay: torch.Tensor,
    chunk_decay: torch.Tensor,
    ddt_direct: torch.Tensor,
    plan: ChunkPlan,
    accumulators: torch.Tensor,
    dt_bias: torch.Tensor | None = None,
    ddt: torch.Tensor | None = None,
) -> CumsumGradients:
    """Folds the gradients w.r.t. `a` and each chunk's decay into dt (added to `ddt_direct` `[H, T]`, from dt's
    other use) and A; with `dt_bias`, into Mamba2's raw dt, dt_bias and A_log as `chunk_cumsum_fwd` took them.
    ddt goes into `ddt` (contiguous rows, any row stride; None: a new `[T, H]`) in dt's dtype; dA and the bias
    gradient are summed into the zeroed fp32 `accumulators` `[2, H]`."""
    T, H = dt.shape
    if ddt is None:
        ddt = torch.empty(T, H, device=dt.device, dtype=dt.dtype)
    dA, ddt_bias = accumulators
    _ssd_bwd_kernel_cumsum[(plan.num_chunks, H)](
        dt_by_head, dt, dt_bias, A, da, dchunk_decay, chunk_decay, ddt_direct, ddt, ddt_bias, dA, plan.chunk_start,
        plan.chunk_len, T, plan.num_chunks, dt.stride(0), ddt.stride(0),
        H=H, CHUNK=plan.chunk_size, RAW_PARAMS=dt_bias is not None,
    )  # fmt: skip
    return CumsumGradients(ddt, dA.to(A.dtype), None if dt_bias is None else ddt_bias)
