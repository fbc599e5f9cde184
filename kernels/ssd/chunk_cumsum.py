"""Log-decay within each chunk: a_t = A * sum of dt over the chunk's tokens up to t, and its backward.

`a` is stored per head and token, `[H, T]` fp32, so every later kernel reads its chunk's decays from the
token positions it already knows.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan


@triton.jit(do_not_specialize=["T"])
def _ssd_fwd_kernel_cumsum(dt, A, a, chunk_start, chunk_len, T, H: tl.constexpr, CHUNK: tl.constexpr):
    c = tl.program_id(0)
    h = tl.program_id(1)
    length = tl.load(chunk_len + c)
    if length <= 0:
        return
    t = tl.load(chunk_start + c).to(tl.int64) + tl.arange(0, CHUNK)
    mask = tl.arange(0, CHUNK) < length
    dt_t = tl.load(dt + t * H + h, mask=mask, other=0.0).to(tl.float32)
    a_t = tl.cumsum(dt_t * tl.load(A + h).to(tl.float32), axis=0)
    tl.store(a + h * T + t, a_t, mask=mask)


@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_cumsum(
    dt, A, da, ddt_partial, ddt, dA, chunk_start, chunk_len, T, H: tl.constexpr, CHUNK: tl.constexpr
):
    c = tl.program_id(0)
    h = tl.program_id(1)
    length = tl.load(chunk_len + c)
    if length <= 0:
        return
    t = tl.load(chunk_start + c).to(tl.int64) + tl.arange(0, CHUNK)
    mask = tl.arange(0, CHUNK) < length
    da_t = tl.load(da + h * T + t, mask=mask, other=0.0)
    # gradient of the per-token increment dt*A: the sum of da over the token and all later ones in the chunk
    dinc = tl.sum(da_t, axis=0) - tl.cumsum(da_t, axis=0) + da_t
    dt_t = tl.load(dt + t * H + h, mask=mask, other=0.0).to(tl.float32)
    A_h = tl.load(A + h).to(tl.float32)
    grad = tl.load(ddt_partial + t * H + h, mask=mask, other=0.0) + A_h * dinc
    tl.store(ddt + t * H + h, grad.to(ddt.dtype.element_ty), mask=mask)
    tl.atomic_add(dA + h, tl.sum(dt_t * dinc, axis=0))


def chunk_cumsum_fwd(dt: torch.Tensor, A: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    T, H = dt.shape
    a = torch.empty(H, T, device=dt.device, dtype=torch.float32)
    _ssd_fwd_kernel_cumsum[(plan.num_chunks, H)](
        dt, A, a, plan.chunk_start, plan.chunk_len, T, H=H, CHUNK=plan.chunk_size
    )
    return a


def chunk_cumsum_bwd(
    dt: torch.Tensor, A: torch.Tensor, da: torch.Tensor, ddt_partial: torch.Tensor, plan: ChunkPlan
) -> tuple[torch.Tensor, torch.Tensor]:
    """Folds the gradient w.r.t. `a` into dt (added to `ddt_partial`, from dt's other use) and A."""
    T, H = dt.shape
    ddt = torch.empty_like(dt)
    dA = torch.zeros(H, device=dt.device, dtype=torch.float32)
    _ssd_bwd_kernel_cumsum[(plan.num_chunks, H)](
        dt, A, da, ddt_partial, ddt, dA, plan.chunk_start, plan.chunk_len, T, H=H, CHUNK=plan.chunk_size
    )
    return ddt, dA.to(A.dtype)
