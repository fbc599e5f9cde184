"""C_l . B_s for every pair of tokens l >= s of a chunk, once per B/C group: every head of the group reuses
them in the backward (`chunk_scan_bwd_dx`) instead of redoing the N-deep product per head."""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.blocks import lane_width
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.jit
def score_block_program(chunk_len, G: tl.constexpr, BLOCK: tl.constexpr):
    """Where a program over the `[num_chunks, G, L, L]` score layout works: the first target (l) and source (s)
    token of its block, its chunk and B/C group, and how many real tokens the chunk holds."""
    l_first = tl.program_id(0) * BLOCK
    s_first = tl.program_id(1) * BLOCK
    c = tl.program_id(2) // G
    g = tl.program_id(2) % G
    return l_first, s_first, c, g, tl.load(chunk_len + c)


@triton.jit
def score_block_tokens(chunk_start, c, l_first, s_first, BLOCK: tl.constexpr):
    """The chunk's first token (int64) and the block's target and source positions inside the chunk."""
    start = tl.load(chunk_start + c).to(tl.int64)
    return start, l_first + tl.arange(0, BLOCK), s_first + tl.arange(0, BLOCK)


@triton.jit
def score_block_pointers(scores, c, g, offs_l, offs_s, G: tl.constexpr, CHUNK: tl.constexpr):
    """Addresses of a [BLOCK, BLOCK] block of a `[num_chunks, G, L, L]` score tensor."""
    return scores + ((c * G + g).to(tl.int64) * CHUNK + offs_l[:, None]) * CHUNK + offs_s[None, :]


@triton.jit
def inside_chunk(offs_l, offs_s, CHUNK: tl.constexpr):
    """Which entries of a block of target and source positions fall inside the chunk's L x L scores."""
    return (offs_l[:, None] < CHUNK) & (offs_s[None, :] < CHUNK)


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
    stride_b,
    stride_c,
    G: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    l_first, s_first, c, g, length = score_block_program(chunk_len, G, BLOCK)
    if (s_first > l_first) | (l_first >= length):
        return
    start, offs_l, offs_s = score_block_tokens(chunk_start, c, l_first, s_first, BLOCK)
    offs_n = tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    # [BLOCK, BLOCK_N] each
    c_l = tl.load(
        C + (start + offs_l)[:, None] * stride_c + g * N + offs_n[None, :],
        mask=(offs_l < length)[:, None] & mask_n[None, :],
        other=0.0,
    )
    b_s = tl.load(
        B + (start + offs_s)[:, None] * stride_b + g * N + offs_n[None, :],
        mask=(offs_s < length)[:, None] & mask_n[None, :],
        other=0.0,
    )
    tl.store(
        score_block_pointers(scores, c, g, offs_l, offs_s, G, CHUNK),
        tl.dot(c_l, tl.trans(b_s)),
        mask=inside_chunk(offs_l, offs_s, CHUNK),
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
        B, C, scores, plan.chunk_start, plan.chunk_len, B.stride(0), C.stride(0), G=G, N=N, CHUNK=L,
        BLOCK_N=lane_width(N),
    )  # fmt: skip
    return scores
