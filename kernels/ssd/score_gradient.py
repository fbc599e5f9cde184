"""Gradient of the chunk scores C_l.B_s of one B/C group: dS_ls = sum over the group's heads of
(dy_l.x_s) dt_s exp(a_l - a_s), for l >= s inside a chunk.

Summing over heads here, on chip, is what lets dB and dC take a single N-deep product per group
(`group_gradient`) instead of one per head.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.blocks import lane_width
from gristmill.kernels.ssd.chunk_scores import inside_chunk, score_block_pointers, score_block_program, score_block_tokens
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.autotune(
    candidates(({"BLOCK": 64}, 4, 2), ({"BLOCK": 64}, 4, 3), ({"BLOCK": 64}, 8, 3), ({"BLOCK": 128}, 8, 2)),
    key=["BLOCK_P", "CHUNK", "H", "G"],
)
@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_score_gradient(
    x,
    dt,
    a,
    dy,
    dscores,
    chunk_start,
    chunk_len,
    T,
    stride_x,
    stride_dy,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_P: tl.constexpr,
):
    l_first, s_first, c, g, length = score_block_program(chunk_len, G, BLOCK)
    if (s_first > l_first) | (l_first >= length):
        return
    start, offs_l, offs_s = score_block_tokens(chunk_start, c, l_first, s_first, BLOCK)
    mask_l = offs_l < length
    mask_s = offs_s < length
    t_l = start + offs_l
    t_s = start + offs_s
    offs_p = tl.arange(0, BLOCK_P)
    mask_p = offs_p < P
    keep = (offs_l[:, None] >= offs_s[None, :]) & mask_l[:, None] & mask_s[None, :]
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    heads_per_group = H // G
    for hh in range(heads_per_group):
        h = g * heads_per_group + hh
        a_l = tl.load(a + h * T + t_l, mask=mask_l, other=0.0)
        a_s = tl.load(a + h * T + t_s, mask=mask_s, other=0.0)
        dt_s = tl.load(dt + h * T + t_s, mask=mask_s, other=0.0)
        # [BLOCK, BLOCK_P] each
        dy_l = tl.load(dy + t_l[:, None] * stride_dy + h * P + offs_p[None, :], mask=mask_l[:, None] & mask_p[None, :], other=0.0)
        x_s = tl.load(x + t_s[:, None] * stride_x + h * P + offs_p[None, :], mask=mask_s[:, None] & mask_p[None, :], other=0.0)
        decay = tl.exp(tl.where(keep, a_l[:, None] - a_s[None, :], float("-inf")))
        acc += tl.dot(dy_l, tl.trans(x_s)) * (decay * dt_s[None, :])
    tl.store(
        score_block_pointers(dscores, c, g, offs_l, offs_s, G, CHUNK),
        acc,
        mask=inside_chunk(offs_l, offs_s, CHUNK),
    )


def score_gradient(x: torch.Tensor, dt: torch.Tensor, a: torch.Tensor, dy: torch.Tensor, plan: ChunkPlan, groups: int) -> torch.Tensor:
    """fp32 `[num_chunks, G, L, L]` laid out like `chunk_scores`: only blocks on or below the diagonal of a
    chunk's real tokens are written, so readers mask with l >= s and both inside the chunk."""
    T, H, P = x.shape
    L = plan.chunk_size
    dscores = torch.empty(plan.num_chunks, groups, L, L, device=x.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(L, meta["BLOCK"]), triton.cdiv(L, meta["BLOCK"]), plan.num_chunks * groups)

    _ssd_bwd_kernel_score_gradient[grid](
        x, dt, a, dy, dscores, plan.chunk_start, plan.chunk_len, T, x.stride(0), dy.stride(0),
        H=H, G=groups, P=P, CHUNK=L, BLOCK_P=lane_width(P),
    )  # fmt: skip
    return dscores
