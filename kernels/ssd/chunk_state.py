"""Each chunk's own contribution to a state `[P, N]`: a weighted sum of outer products over its tokens.

Forward: the state a chunk leaves behind from its own tokens, sum_s exp(a_last - a_s) dt_s x_s B_s^T.
Backward: the gradient a chunk sends to the state entering it, sum_l exp(a_l) dy_l C_l^T.
One kernel serves both; `TO_END` picks the weight.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.autotune(
    candidates(({"BLOCK_S": 64}, 4, 2), ({"BLOCK_S": 64}, 8, 2), ({"BLOCK_S": 128}, 8, 2), ({"BLOCK_S": 32}, 4, 3)), key=["BLOCK_P", "BLOCK_N", "CHUNK", "TO_END"]
)
@triton.jit(do_not_specialize=["T"])
def _ssd_kernel_chunk_state(
    v,
    dt,
    a,
    k,
    states,
    chunk_start,
    chunk_len,
    T,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    TO_END: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    c = tl.program_id(0)
    h = tl.program_id(1)
    length = tl.load(chunk_len + c)
    if length <= 0:
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    g = h // (H // G)
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    a_last = tl.load(a + h * T + start + length - 1)
    acc = tl.zeros([BLOCK_P, BLOCK_N], dtype=tl.float32)
    for s0 in range(0, length, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        mask_s = offs_s < length
        t = start + offs_s
        a_s = tl.load(a + h * T + t, mask=mask_s, other=0.0)
        if TO_END:
            weight = tl.exp(a_last - a_s) * tl.load(dt + h * T + t, mask=mask_s, other=0.0)
        else:
            weight = tl.exp(a_s)
        weight = tl.where(mask_s, weight, 0.0)
        # [BLOCK_P, BLOCK_S]
        v_s = tl.load(
            v + (t[None, :] * H + h) * P + offs_p[:, None],
            mask=mask_s[None, :] & (offs_p[:, None] < P),
            other=0.0,
        )
        # [BLOCK_S, BLOCK_N]
        k_s = tl.load(
            k + (t[:, None] * G + g) * N + offs_n[None, :],
            mask=mask_s[:, None] & (offs_n[None, :] < N),
            other=0.0,
        )
        acc += tl.dot(v_s, (k_s * weight[:, None]).to(v_s.dtype))
    tl.store(
        states + ((c * H + h) * P + offs_p[:, None]) * N + offs_n[None, :],
        acc,
        mask=(offs_p[:, None] < P) & (offs_n[None, :] < N),
    )


def chunk_state(
    v: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, k: torch.Tensor, plan: ChunkPlan, *, to_end: bool
) -> torch.Tensor:
    """fp32 `[num_chunks, H, P, N]` from v `[T, H, P]`, dt `[H, T]` and k `[T, G, N]`; spare chunks stay
    unwritten."""
    T, H, P = v.shape
    G, N = k.shape[1], k.shape[2]
    states = torch.empty(plan.num_chunks, H, P, N, device=v.device, dtype=torch.float32)
    _ssd_kernel_chunk_state[(plan.num_chunks, H)](
        v, dt, a, k, states, plan.chunk_start, plan.chunk_len, T,
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, TO_END=to_end,
        BLOCK_P=max(16, triton.next_power_of_2(P)),
        BLOCK_N=max(16, triton.next_power_of_2(N)),
    )  # fmt: skip
    return states
