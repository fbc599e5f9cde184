"""Gradient of the chunk scores C_l.B_s of one B/C group: dS_ls = sum over the group's heads of
(dy_l.x_s) dt_s exp(a_l - a_s), for l >= s inside a chunk; and each head's decay gradient inside the chunk.

Summing over heads here, on chip, is what lets dB and dC take a single N-deep product per group
(`group_gradient`) instead of one per head. Each head's tile times C_l.B_s is W_ls, which a_l gains and a_s
loses: both halves come from the same fp32 tile, so they cancel exactly where the chunk's decay does not move
(the sum over later tokens in `chunk_cumsum_bwd` would otherwise pile up their rounding).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fast_exp import exp_ftz
from gristmill.kernels.ssd.blocks import accumulate, group_rows, head_rows, head_state_lanes, lane_width, token_block
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.jit
def _decay_inputs(a, dt, h, T, t_l, mask_l, t_s, mask_s, split, below):
    """Head h's a at the target and source tokens, dt at the sources, and a at `split` (0 unless `below`)."""
    a_l = tl.load(a + h * T + t_l, mask=mask_l, other=0.0)
    a_s = tl.load(a + h * T + t_s, mask=mask_s, other=0.0)
    dt_s = tl.load(dt + h * T + t_s, mask=mask_s, other=0.0)
    return a_l, a_s, dt_s, tl.load(a + h * T + split, mask=below, other=0.0)


@triton.autotune(
    candidates(({"BLOCK": 64}, 4, 2), ({"BLOCK": 64}, 4, 3), ({"BLOCK": 64}, 8, 3), ({"BLOCK": 128}, 8, 2)),
    key=["BLOCK_P", "BLOCK_N", "CHUNK", "H", "G"],
    reset_to_zero=["da"],  # takes atomic adds, so every tuning trial starts it from zero
)
@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_score_gradient(
    x,
    dt,
    a,
    B,
    C,
    dy,
    dscores,
    da,
    chunk_start,
    chunk_len,
    T,
    stride_x,
    stride_b,
    stride_c,
    stride_dy,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK: tl.constexpr,
    BLOCK_P: tl.constexpr,
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
    offs_l, mask_l, t_l = token_block(start, l_first, length, BLOCK)
    offs_s, mask_s, t_s = token_block(start, s_first, length, BLOCK)
    offs_p, mask_p, offs_n, mask_n = head_state_lanes(P, N, BLOCK_P, BLOCK_N)
    keep = (offs_l[:, None] >= offs_s[None, :]) & mask_l[:, None] & mask_s[None, :]
    # [BLOCK, BLOCK_N] each, then [BLOCK, BLOCK]: C_l.B_s, shared by the group's heads
    c_rows, mask_ln = group_rows(t_l, mask_l, stride_c, g, offs_n, mask_n, N)
    b_rows, mask_sn = group_rows(t_s, mask_s, stride_b, g, offs_n, mask_n, N)
    c_l = tl.load(C + c_rows, mask=mask_ln, other=0.0)
    b_s = tl.load(B + b_rows, mask=mask_sn, other=0.0)
    scores = tl.dot(c_l, tl.trans(b_s))
    acc = tl.zeros([BLOCK, BLOCK], dtype=tl.float32)
    heads_per_group = H // G
    first_head = g * heads_per_group
    split = start + s_first + BLOCK - 1  # the source block's last token, real when below the diagonal
    below = s_first < l_first
    a_l, a_s, dt_s, a_split = _decay_inputs(a, dt, first_head, T, t_l, mask_l, t_s, mask_s, split, below)
    for hh in range(heads_per_group):
        h = first_head + hh
        # the next head's decay inputs load while this head's tile is formed and reduced
        next_h = first_head + tl.minimum(hh + 1, heads_per_group - 1)
        next_a_l, next_a_s, next_dt_s, next_a_split = _decay_inputs(
            a, dt, next_h, T, t_l, mask_l, t_s, mask_s, split, below
        )
        # [BLOCK, BLOCK_P] each
        dy_rows, mask_lp = head_rows(t_l, mask_l, stride_dy, h, offs_p, mask_p, P)
        x_rows, mask_sp = head_rows(t_s, mask_s, stride_x, h, offs_p, mask_p, P)
        dy_l = tl.load(dy + dy_rows, mask=mask_lp, other=0.0)
        x_s = tl.load(x + x_rows, mask=mask_sp, other=0.0)
        if s_first == l_first:
            weight = exp_ftz(tl.where(keep, a_l[:, None] - a_s[None, :], float("-inf"))) * dt_s[None, :]
        else:  # every s before every l: the decay splits at the s block's last token, both factors <= 1
            to_l = tl.where(mask_l, exp_ftz(a_l - a_split), 0.0)
            weight = to_l[:, None] * (exp_ftz(a_split - a_s) * dt_s)[None, :]
        head_dscores = tl.dot(dy_l, tl.trans(x_s)) * weight
        acc += head_dscores
        decay_grad = head_dscores * scores
        accumulate(da + h * T + t_l, tl.sum(decay_grad, axis=1), mask_l)
        accumulate(da + h * T + t_s, -tl.sum(decay_grad, axis=0), mask_s)
        a_l, a_s, dt_s, a_split = next_a_l, next_a_s, next_dt_s, next_a_split
    tl.store(
        dscores + ((c * G + g).to(tl.int64) * CHUNK + offs_l[:, None]) * CHUNK + offs_s[None, :],
        acc,
        mask=(offs_l[:, None] < CHUNK) & (offs_s[None, :] < CHUNK),
    )


def score_gradient(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    dy: torch.Tensor,
    plan: ChunkPlan,
    da: torch.Tensor,
) -> torch.Tensor:
    """The score gradient, fp32 `[num_chunks, G, L, L]` (only blocks on or below the diagonal of a chunk's real
    tokens are written, so readers mask with l >= s and both inside the chunk); adds the gradient w.r.t. `a`
    through the scores into the zeroed fp32 `da` `[H, T]`."""
    T, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    L = plan.chunk_size
    dscores = torch.empty(plan.num_chunks, G, L, L, device=x.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(L, meta["BLOCK"]), triton.cdiv(L, meta["BLOCK"]), plan.num_chunks * G)

    _ssd_bwd_kernel_score_gradient[grid](
        x, dt, a, B, C, dy, dscores, da, plan.chunk_start, plan.chunk_len, T,
        x.stride(0), B.stride(0), C.stride(0), dy.stride(0),
        H=H, G=G, P=P, N=N, CHUNK=L,
        BLOCK_P=lane_width(P),
        BLOCK_N=lane_width(N),
    )  # fmt: skip
    return dscores
