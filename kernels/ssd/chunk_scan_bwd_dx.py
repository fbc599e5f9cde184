"""SSD backward for x, dt's direct use, D and the decay, one block of source tokens s of one chunk and head per
program, given the gradient of each chunk's leaving state dS_out and the group's chunk scores C_l.B_s.

With v_s = dt_s x_s and M_ls = (C_l.B_s) exp(a_l - a_s) for s <= l:
dv_s = sum_l M_ls dy_l + exp(a_last - a_s) dS_out B_s, giving dx and dt's direct part. The decay gradient
W_ls = (dy_l.v_s) M_ls is computed once here and added to a_l and taken from a_s, so the two halves cancel
exactly where they must; the pull of v_s on the leaving state goes to a_last and is taken from a_s.
B and C themselves get their gradients per group in `score_gradient` and `group_gradient`.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.blocks import head_state_lanes, lane_width, token_block
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.autotune(
    candidates(
        ({"BLOCK_S": 64, "BLOCK_L": 64}, 4, 2),
        ({"BLOCK_S": 64, "BLOCK_L": 64}, 4, 3),
        ({"BLOCK_S": 64, "BLOCK_L": 64}, 8, 2),
        ({"BLOCK_S": 64, "BLOCK_L": 32}, 4, 3),
        ({"BLOCK_S": 128, "BLOCK_L": 64}, 8, 2),
        ({"BLOCK_S": 64, "BLOCK_L": 64}, 4, 4),
        ({"BLOCK_S": 32, "BLOCK_L": 64}, 4, 3),
        ({"BLOCK_S": 64, "BLOCK_L": 128}, 8, 2),
    ),
    key=["BLOCK_P", "BLOCK_N", "CHUNK"],
    reset_to_zero=["da", "dD"],  # both take atomic adds, so every tuning trial starts them from zero
)
@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_dx(
    x,
    dt,
    a,
    B,
    scores,
    D,
    dy,
    dleaving,
    dx,
    ddt_direct,
    da,
    dD,
    chunk_start,
    chunk_len,
    T,
    stride_x,
    stride_b,
    stride_dy,
    stride_dx,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    HAS_D: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    s_first = tl.program_id(0) * BLOCK_S
    h = tl.program_id(1)
    c = tl.program_id(2)
    length = tl.load(chunk_len + c)
    if s_first >= length:
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    g = h // (H // G)
    offs_s, mask_s, t_s = token_block(start, s_first, length, BLOCK_S)
    offs_p, mask_p, offs_n, mask_n = head_state_lanes(P, N, BLOCK_P, BLOCK_N)
    mask_sp = mask_s[:, None] & mask_p[None, :]
    head_cols = h * P + offs_p[None, :]
    # [BLOCK_S, BLOCK_P]
    x_s = tl.load(x + t_s[:, None] * stride_x + head_cols, mask=mask_sp, other=0.0)
    a_s = tl.load(a + h * T + t_s, mask=mask_s, other=0.0)
    dt_s = tl.load(dt + h * T + t_s, mask=mask_s, other=0.0)
    group_scores = scores + (c * G + g).to(tl.int64) * CHUNK * CHUNK
    dv = tl.zeros([BLOCK_S, BLOCK_P], dtype=tl.float32)
    taken = tl.zeros([BLOCK_S], dtype=tl.float32)
    for l0 in range(s_first, length, BLOCK_L):
        offs_l, mask_l, t_l = token_block(start, l0, length, BLOCK_L)
        a_l = tl.load(a + h * T + t_l, mask=mask_l, other=0.0)
        # [BLOCK_L, BLOCK_P]
        dy_l = tl.load(dy + t_l[:, None] * stride_dy + head_cols, mask=mask_l[:, None] & mask_p[None, :], other=0.0)
        keep = (offs_l[None, :] >= offs_s[:, None]) & mask_l[None, :] & mask_s[:, None]
        # [BLOCK_S, BLOCK_L]: M transposed, and dy_l.v_s
        cb_t = tl.load(group_scores + offs_l[None, :] * CHUNK + offs_s[:, None], mask=keep, other=0.0)
        m_t = cb_t * tl.exp(tl.where(keep, a_l[None, :] - a_s[:, None], float("-inf")))
        dyv = tl.dot(x_s, tl.trans(dy_l)) * dt_s[:, None]
        dv += tl.dot(m_t.to(dy_l.dtype), dy_l)
        w_t = m_t * dyv
        taken += tl.sum(w_t, axis=1)
        tl.atomic_add(da + h * T + t_l, tl.sum(w_t, axis=0), mask=mask_l)
    end = start + length - 1
    to_end = tl.where(mask_s, tl.exp(tl.load(a + h * T + end) - a_s), 0.0)
    # [BLOCK_S, BLOCK_N], [BLOCK_P, BLOCK_N]
    b_s = tl.load(B + t_s[:, None] * stride_b + g * N + offs_n[None, :], mask=mask_s[:, None] & mask_n[None, :], other=0.0)
    q = tl.load(
        dleaving + ((c * H + h).to(tl.int64) * P + offs_p[:, None]) * N + offs_n[None, :],
        mask=mask_p[:, None] & mask_n[None, :],
        other=0.0,
    )
    bq = tl.dot(b_s, tl.trans(q).to(b_s.dtype)) * to_end[:, None]
    dv += bq
    x_f = x_s.to(tl.float32)
    to_state = tl.sum(x_f * bq, axis=1) * dt_s
    tl.atomic_add(da + h * T + t_s, -taken - to_state, mask=mask_s)
    tl.atomic_add(da + h * T + end, tl.sum(to_state, axis=0))
    grad_x = dv * dt_s[:, None]
    if HAS_D:
        dy_s = tl.load(dy + t_s[:, None] * stride_dy + head_cols, mask=mask_sp, other=0.0).to(tl.float32)
        grad_x += tl.load(D + h).to(tl.float32) * dy_s
        tl.atomic_add(dD + h, tl.sum(tl.sum(dy_s * x_f, axis=1), axis=0))
    tl.store(dx + t_s[:, None] * stride_dx + head_cols, grad_x.to(dx.dtype.element_ty), mask=mask_sp)
    tl.store(ddt_direct + h * T + t_s, tl.sum(dv * x_f, axis=1), mask=mask_s)


def chunk_scan_bwd_dx(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    scores: torch.Tensor,
    D: torch.Tensor | None,
    dy: torch.Tensor,
    dleaving: torch.Tensor,
    plan: ChunkPlan,
    dx: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Writes dx into `dx` (`[T, H, P]`, contiguous rows, any row stride); returns dt's direct part and the
    gradient w.r.t. `a` (both `[H, T]` fp32), and dD (or None)."""
    T, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    ddt_direct = torch.empty_like(a)
    da = torch.zeros_like(a)
    dD = torch.zeros(H, device=x.device, dtype=torch.float32)

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(plan.chunk_size, meta["BLOCK_S"]), H, plan.num_chunks)

    _ssd_bwd_kernel_dx[grid](
        x, dt, a, B, scores, D, dy, dleaving, dx, ddt_direct, da, dD, plan.chunk_start, plan.chunk_len, T,
        x.stride(0), B.stride(0), dy.stride(0), dx.stride(0),
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, HAS_D=D is not None,
        BLOCK_P=lane_width(P),
        BLOCK_N=lane_width(N),
    )  # fmt: skip
    return ddt_direct, da, dD if D is not None else None
