"""C_l . B_s for every pair of tokens l >= s of a chunk, once per B/C group: every head of the group reuses
them in the backward (`chunk_scan_bwd_dx`) instead of redoing the N-deep product per head."""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.autotune(
    candidates(({"BLOCK": 64}, 4, 2), ({"BLOCK": 64}, 8, 2), ({"BLOCK": 128}, 8, 2)), key=["BLOCK_N", "CHUNK"]
)
@triton.jit
def _ssd_fwd_kernel_scores(
    B,
    C,
    scores,
    chunk_start,
    chunk_len,
    G: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    l_first = tl.program_id(0) * BLOCK
    s_first = tl.program_id(1) * BLOCK
    c = tl.program_id(2) // G
    g = tl.program_id(2) % G
    length = tl.load(chunk_len + c)
    if (s_first > l_first) | (l_first >= length):
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    offs_l = l_first + tl.arange(0, BLOCK)
    offs_s = s_first + tl.arange(0, BLOCK)
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    # [BLOCK, BLOCK_N] each
    c_l = tl.load(
        C + ((start + offs_l)[:, None] * G + g) * N + offs_n[None, :],
        mask=(offs_l < length)[:, None] & mask_n[None, :],
        other=0.0,
    )
    b_s = tl.load(
        B + ((start + offs_s)[:, None] * G + g) * N + offs_n[None, :],
        mask=(offs_s < length)[:, None] & mask_n[None, :],
        other=0.0,
    )
    tl.store(
        scores + ((c * G + g).to(tl.int64) * CHUNK + offs_l[:, None]) * CHUNK + offs_s[None, :],
        tl.dot(c_l, tl.trans(b_s)),
        mask=(offs_l[:, None] < CHUNK) & (offs_s[None, :] < CHUNK),
    )


def chunk_scores(B: torch.Tensor, C: torch.Tensor, plan: ChunkPlan) -> torch.Tensor:
    """fp32 `[num_chunks, G, L, L]`, [c, g, l, s] = C_l . B_s; only blocks on or below the diagonal of a
    chunk's real tokens are written, so readers mask with l >= s and both inside the chunk."""
    G, N = B.shape[1], B.shape[2]
    L = plan.chunk_size
    scores = torch.empty(plan.num_chunks, G, L, L, device=B.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(L, meta["BLOCK"]), triton.cdiv(L, meta["BLOCK"]), plan.num_chunks * G)

    _ssd_fwd_kernel_scores[grid](
        B, C, scores, plan.chunk_start, plan.chunk_len, G=G, N=N, CHUNK=L,
        BLOCK_N=max(16, triton.next_power_of_2(N)),
    )  # fmt: skip
    return scores
