"""Gradient of C (target side) or B (source side) of one B/C group, one block of its tokens u per program.

Target, u = l: dC_l = sum_s dS_ls B_s + sum_h exp(a_l) dy_l S_in, and the inter-chunk decay gradient
exp(a_l) dy_l.(S_in C_l) of each head, added to a_l.
Source, u = s: dB_s = sum_l dS_ls C_l + sum_h exp(a_last - a_s) dt_s x_s dS_out, and the pull of each head's
v_s on the leaving state, exp(a_last - a_s) dt_s x_s.(dS_out B_s), added to a_last and taken from a_s.
dS is the head-summed score gradient of `score_gradient`; the per-head states are S_in (entering) on the
target side and dS_out (the leaving-state gradient) on the source side.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fast_exp import exp_ftz
from gristmill.kernels.ssd.blocks import accumulate, group_rows, head_rows, head_state_lanes, lane_width, token_block
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.jit
def _decay_inputs(a, dt, h, T, t_u, mask_u, a_last_offset):
    """Head h's a and dt at the block's tokens and a at the chunk's last token."""
    a_u = tl.load(a + h * T + t_u, mask=mask_u, other=0.0)
    return a_u, tl.load(dt + h * T + t_u, mask=mask_u, other=0.0), tl.load(a + h * T + a_last_offset)


@triton.autotune(
    candidates(
        ({"BLOCK_U": 64, "BLOCK_V": 64}, 4, 2),
        ({"BLOCK_U": 64, "BLOCK_V": 64}, 4, 3),
        ({"BLOCK_U": 64, "BLOCK_V": 64}, 8, 3),
        ({"BLOCK_U": 128, "BLOCK_V": 64}, 8, 2),
    ),
    key=["BLOCK_P", "BLOCK_N", "CHUNK", "H", "G", "SOURCE"],
    restore_value=["da"],  # already holds the other decay gradients and takes atomic adds on top
)
@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_group_gradient(
    vectors,
    states,
    partner,
    own,
    dscores,
    dt,
    a,
    da,
    grad,
    chunk_start,
    chunk_len,
    T,
    stride_vectors,
    stride_partner,
    stride_own,
    stride_grad,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    SOURCE: tl.constexpr,
    BLOCK_U: tl.constexpr,
    BLOCK_V: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    u_first = tl.program_id(0) * BLOCK_U
    c = tl.program_id(1) // G
    g = tl.program_id(1) % G
    length = tl.load(chunk_len + c)
    if u_first >= length:
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    offs_u, mask_u, t_u = token_block(start, u_first, length, BLOCK_U)
    offs_p, mask_p, offs_n, mask_n = head_state_lanes(P, N, BLOCK_P, BLOCK_N)
    own_rows, mask_un = group_rows(t_u, mask_u, stride_own, g, offs_n, mask_n, N)
    group_dscores = dscores + (c * G + g).to(tl.int64) * CHUNK * CHUNK
    acc = tl.zeros([BLOCK_U, BLOCK_N], dtype=tl.float32)
    if SOURCE:
        v_begin = u_first
        v_end = length
    else:
        v_begin = 0
        v_end = tl.minimum(u_first + BLOCK_U, length)
    for v0 in range(v_begin, v_end, BLOCK_V):
        offs_v, mask_v, t_v = token_block(start, v0, length, BLOCK_V)
        # [BLOCK_U, BLOCK_V]: dS with the block's own tokens as rows
        if SOURCE:
            keep = (offs_v[None, :] >= offs_u[:, None]) & mask_v[None, :] & mask_u[:, None]
            ds = tl.load(group_dscores + offs_v[None, :] * CHUNK + offs_u[:, None], mask=keep, other=0.0)
        else:
            keep = (offs_u[:, None] >= offs_v[None, :]) & mask_v[None, :] & mask_u[:, None]
            ds = tl.load(group_dscores + offs_u[:, None] * CHUNK + offs_v[None, :], mask=keep, other=0.0)
        # [BLOCK_V, BLOCK_N]
        partner_rows, mask_vn = group_rows(t_v, mask_v, stride_partner, g, offs_n, mask_n, N)
        k_v = tl.load(partner + partner_rows, mask=mask_vn, other=0.0)
        acc += tl.dot(ds.to(k_v.dtype), k_v)
    own_u = tl.load(own + own_rows, mask=mask_un, other=0.0).to(tl.float32)
    a_last_offset = start + length - 1
    heads_per_group = H // G
    first_head = g * heads_per_group
    a_u, dt_u, a_last = _decay_inputs(a, dt, first_head, T, t_u, mask_u, a_last_offset)
    for hh in range(heads_per_group):
        h = first_head + hh
        # the next head's decay inputs load while this head's product runs
        next_h = first_head + tl.minimum(hh + 1, heads_per_group - 1)
        next_a_u, next_dt_u, next_a_last = _decay_inputs(a, dt, next_h, T, t_u, mask_u, a_last_offset)
        if SOURCE:
            weight = exp_ftz(a_last - a_u) * dt_u
        else:
            weight = exp_ftz(a_u)
        weight = tl.where(mask_u, weight, 0.0)
        # [BLOCK_U, BLOCK_P], [BLOCK_P, BLOCK_N]
        vec_rows, mask_up = head_rows(t_u, mask_u, stride_vectors, h, offs_p, mask_p, P)
        vec = tl.load(vectors + vec_rows, mask=mask_up, other=0.0)
        state = tl.load(
            states + ((c * H + h).to(tl.int64) * P + offs_p[:, None]) * N + offs_n[None, :],
            mask=mask_p[:, None] & mask_n[None, :],
            other=0.0,
        )
        inter = tl.dot(vec, state.to(vec.dtype)) * weight[:, None]
        acc += inter
        pull = tl.sum(inter * own_u, axis=1)
        if SOURCE:
            accumulate(da + h * T + t_u, -pull, mask_u)
            accumulate(da + h * T + a_last_offset, tl.sum(pull, axis=0))
        else:
            accumulate(da + h * T + t_u, pull, mask_u)
        a_u, dt_u, a_last = next_a_u, next_dt_u, next_a_last
    grad_rows, _ = group_rows(t_u, mask_u, stride_grad, g, offs_n, mask_n, N)
    tl.store(grad + grad_rows, acc.to(grad.dtype.element_ty), mask=mask_un)


def group_gradient(
    dscores: torch.Tensor,
    vectors: torch.Tensor,
    states: torch.Tensor,
    partner: torch.Tensor,
    own: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    da: torch.Tensor,
    plan: ChunkPlan,
    grad: torch.Tensor,
    *,
    source: bool,
) -> None:
    """Writes dB (source: vectors x, states dS_out, partner C, own B) or dC (target: vectors dy, states S_in,
    partner B, own C) into `grad`, shaped like `own`; either side adds its state terms of the decay gradient
    into `da`. Every token row may lie at its own stride."""
    T, H, P = vectors.shape
    G, N = own.shape[1], own.shape[2]

    def grid(meta: dict) -> tuple[int, int]:
        return (triton.cdiv(plan.chunk_size, meta["BLOCK_U"]), plan.num_chunks * G)

    _ssd_bwd_kernel_group_gradient[grid](
        vectors, states, partner, own, dscores, dt, a, da, grad, plan.chunk_start, plan.chunk_len, T,
        vectors.stride(0), partner.stride(0), own.stride(0), grad.stride(0),
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, SOURCE=source,
        BLOCK_P=lane_width(P),
        BLOCK_N=lane_width(N),
    )  # fmt: skip
