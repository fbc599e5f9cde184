"""Log-decay within each chunk: a_t = A * sum of dt over the chunk's tokens up to t, and its backward.

Everything per token is stored head-major, `[H, T]` fp32 (`a`, and dt itself): the later kernels read a
block of consecutive tokens of one head, which is then one contiguous load instead of one per token. Each
chunk's total decay exp(a_last) is also kept, `[H, num_chunks]`, for the state passing.
"""

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


@triton.jit(do_not_specialize=["T", "NUM_CHUNKS"])
def _ssd_fwd_kernel_cumsum(
    dt,
    A,
    a,
    dt_by_head,
    chunk_decay,
    chunk_start,
    chunk_len,
    T,
    NUM_CHUNKS,
    H: tl.constexpr,
    CHUNK: tl.constexpr,
):
    c, h, length = _chunk_head_program(chunk_len)
    if length <= 0:
        return
    t, mask = _chunk_slots(chunk_start, c, length, CHUNK)
    dt_t = tl.load(dt + t * H + h, mask=mask, other=0.0).to(tl.float32)
    a_t = tl.cumsum(dt_t * tl.load(A + h).to(tl.float32), axis=0)
    tl.store(a + h * T + t, a_t, mask=mask)
    tl.store(dt_by_head + h * T + t, dt_t, mask=mask)
    tl.store(chunk_decay + h * NUM_CHUNKS + c, tl.exp(tl.sum(tl.where(tl.arange(0, CHUNK) == length - 1, a_t, 0.0))))


@triton.jit(do_not_specialize=["T", "NUM_CHUNKS"])
def _ssd_bwd_kernel_cumsum(
    dt_by_head,
    A,
    da,
    dlog_decay,
    ddt_direct,
    ddt,
    dA,
    chunk_start,
    chunk_len,
    T,
    NUM_CHUNKS,
    H: tl.constexpr,
    CHUNK: tl.constexpr,
):
    c, h, length = _chunk_head_program(chunk_len)
    if length <= 0:
        return
    t, mask = _chunk_slots(chunk_start, c, length, CHUNK)
    da_t = tl.load(da + h * T + t, mask=mask, other=0.0)
    da_t += tl.where(tl.arange(0, CHUNK) == length - 1, tl.load(dlog_decay + h * NUM_CHUNKS + c), 0.0)
    # gradient of the per-token increment dt*A: the sum of da over the token and all later ones in the chunk
    dinc = tl.sum(da_t, axis=0) - tl.cumsum(da_t, axis=0) + da_t
    dt_t = tl.load(dt_by_head + h * T + t, mask=mask, other=0.0)
    A_h = tl.load(A + h).to(tl.float32)
    grad = tl.load(ddt_direct + h * T + t, mask=mask, other=0.0) + A_h * dinc
    tl.store(ddt + t * H + h, grad.to(ddt.dtype.element_ty), mask=mask)
    accumulate(dA + h, tl.sum(dt_t * dinc, axis=0))


def chunk_cumsum_fwd(
    dt: torch.Tensor, A: torch.Tensor, plan: ChunkPlan
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns `a` and dt, both `[H, T]` fp32, and each chunk's decay `[H, num_chunks]` (spare chunks unwritten)."""
    T, H = dt.shape
    a = torch.empty(H, T, device=dt.device, dtype=torch.float32)
    dt_by_head = torch.empty_like(a)
    chunk_decay = torch.empty(H, plan.num_chunks, device=dt.device, dtype=torch.float32)
    _ssd_fwd_kernel_cumsum[(plan.num_chunks, H)](
        dt, A, a, dt_by_head, chunk_decay, plan.chunk_start, plan.chunk_len, T, plan.num_chunks,
        H=H, CHUNK=plan.chunk_size,
    )  # fmt: skip
    return a, dt_by_head, chunk_decay


def chunk_cumsum_bwd(
    dt: torch.Tensor,
    dt_by_head: torch.Tensor,
    A: torch.Tensor,
    da: torch.Tensor,
    dlog_decay: torch.Tensor,
    ddt_direct: torch.Tensor,
    plan: ChunkPlan,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Folds the gradients w.r.t. `a` and each chunk's total log-decay into dt (added to `ddt_direct` `[H, T]`,
    from dt's other use) and A; ddt comes back in dt's layout and dtype."""
    T, H = dt.shape
    ddt = torch.empty_like(dt)
    dA = torch.zeros(H, device=dt.device, dtype=torch.float32)
    _ssd_bwd_kernel_cumsum[(plan.num_chunks, H)](
        dt_by_head, A, da, dlog_decay, ddt_direct, ddt, dA, plan.chunk_start, plan.chunk_len, T, plan.num_chunks,
        H=H, CHUNK=plan.chunk_size,
    )  # fmt: skip
    return ddt, dA.to(A.dtype)
