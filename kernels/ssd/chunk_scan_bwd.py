"""SSD backward inside chunks, given dS_out (the gradient of each chunk's leaving state) and S_in.

With v_s = dt_s x_s and M_ls = (C_l.B_s) exp(a_l - a_s) for s <= l:
- source side (a block of tokens s, all later tokens l of its chunk): dv_s = sum_l M_ls dy_l +
  exp(a_last - a_s) dS_out B_s, giving dx and dt's direct part; dB_s; the decay gradients W_ls =
  (dy_l.v_s) M_ls, added to a_l and taken from a_s; and dD.
- target side (a block of tokens l, all earlier tokens s): dC_l and the gradient of exp(a_l) in the
  inter-chunk term.
Each program walks all heads of one B/C group, so dB and dC are summed over heads on chip.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.autotune(
    candidates(
        ({"BLOCK_S": 64, "BLOCK_L": 64}, 8, 2),
        ({"BLOCK_S": 32, "BLOCK_L": 64}, 4, 2),
        ({"BLOCK_S": 32, "BLOCK_L": 64}, 8, 2),
        ({"BLOCK_S": 64, "BLOCK_L": 32}, 8, 2),
    ),
    key=["BLOCK_P", "BLOCK_N", "CHUNK", "H", "G"],
    restore_value=["da", "dD"],  # both are accumulated with atomics, so every trial must start from the same
)
@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_source(
    x,
    dt,
    a,
    B,
    C,
    D,
    dy,
    dleaving,
    dx,
    ddt_direct,
    dB,
    da,
    dD,
    chunk_start,
    chunk_len,
    T,
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
    c = tl.program_id(1)
    g = tl.program_id(2)
    length = tl.load(chunk_len + c)
    if s_first >= length:
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    end = start + length - 1
    offs_s = s_first + tl.arange(0, BLOCK_S)
    mask_s = offs_s < length
    t_s = start + offs_s
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < P
    mask_n = offs_n < N
    mask_sp = mask_s[:, None] & mask_p[None, :]
    # [BLOCK_S, BLOCK_N]
    b_s = tl.load(B + (t_s[:, None] * G + g) * N + offs_n[None, :], mask=mask_s[:, None] & mask_n[None, :], other=0.0)
    db = tl.zeros([BLOCK_S, BLOCK_N], dtype=tl.float32)
    heads_per_group = H // G
    for hh in range(heads_per_group):
        h = g * heads_per_group + hh
        a_s = tl.load(a + h * T + t_s, mask=mask_s, other=0.0)
        dt_s = tl.load(dt + t_s * H + h, mask=mask_s, other=0.0).to(tl.float32)
        x_ptrs = (t_s[:, None] * H + h) * P + offs_p[None, :]
        x_s = tl.load(x + x_ptrs, mask=mask_sp, other=0.0)
        v_s = x_s.to(tl.float32) * dt_s[:, None]
        v_lp = v_s.to(x_s.dtype)
        dv = tl.zeros([BLOCK_S, BLOCK_P], dtype=tl.float32)
        taken = tl.zeros([BLOCK_S], dtype=tl.float32)
        for l0 in range(s_first, length, BLOCK_L):
            offs_l = l0 + tl.arange(0, BLOCK_L)
            mask_l = offs_l < length
            t_l = start + offs_l
            a_l = tl.load(a + h * T + t_l, mask=mask_l, other=0.0)
            # [BLOCK_L, BLOCK_N], [BLOCK_L, BLOCK_P]
            c_l = tl.load(
                C + (t_l[:, None] * G + g) * N + offs_n[None, :], mask=mask_l[:, None] & mask_n[None, :], other=0.0
            )
            dy_l = tl.load(
                dy + (t_l[:, None] * H + h) * P + offs_p[None, :], mask=mask_l[:, None] & mask_p[None, :], other=0.0
            )
            keep = (offs_l[None, :] >= offs_s[:, None]) & mask_l[None, :]
            decay = tl.exp(tl.where(keep, a_l[None, :] - a_s[:, None], float("-inf")))
            # [BLOCK_S, BLOCK_L]: M transposed, and dy_l.v_s
            m_t = tl.dot(b_s, tl.trans(c_l)) * decay
            dyv = tl.dot(v_lp, tl.trans(dy_l))
            dv += tl.dot(m_t.to(dy_l.dtype), dy_l)
            db += tl.dot((dyv * decay).to(c_l.dtype), c_l)
            w_t = m_t * dyv
            taken += tl.sum(w_t, axis=1)
            tl.atomic_add(da + h * T + t_l, tl.sum(w_t, axis=0), mask=mask_l)
        a_last = tl.load(a + h * T + end)
        to_end = tl.where(mask_s, tl.exp(a_last - a_s), 0.0)
        # [BLOCK_P, BLOCK_N]
        q = tl.load(
            dleaving + ((c * H + h).to(tl.int64) * P + offs_p[:, None]) * N + offs_n[None, :],
            mask=mask_p[:, None] & mask_n[None, :],
            other=0.0,
        ).to(x_s.dtype)
        bq = tl.dot(b_s, tl.trans(q)) * to_end[:, None]
        dv += bq
        db += tl.dot(v_lp, q) * to_end[:, None]
        to_state = tl.sum(v_s * bq, axis=1)
        tl.atomic_add(da + h * T + t_s, -taken - to_state, mask=mask_s)
        tl.atomic_add(da + h * T + end, tl.sum(to_state, axis=0))
        dy_s = tl.load(dy + x_ptrs, mask=mask_sp, other=0.0).to(tl.float32)
        grad_x = dv * dt_s[:, None]
        if HAS_D:
            grad_x += tl.load(D + h).to(tl.float32) * dy_s
            tl.atomic_add(dD + h, tl.sum(tl.sum(dy_s * x_s.to(tl.float32), axis=1), axis=0))
        tl.store(dx + x_ptrs, grad_x.to(dx.dtype.element_ty), mask=mask_sp)
        tl.store(ddt_direct + t_s * H + h, tl.sum(dv * x_s.to(tl.float32), axis=1), mask=mask_s)
    tl.store(
        dB + (t_s[:, None] * G + g) * N + offs_n[None, :],
        db.to(dB.dtype.element_ty),
        mask=mask_s[:, None] & mask_n[None, :],
    )


@triton.autotune(
    candidates(
        ({"BLOCK_L": 64, "BLOCK_S": 64}, 4, 2),
        ({"BLOCK_L": 64, "BLOCK_S": 64}, 8, 2),
        ({"BLOCK_L": 32, "BLOCK_S": 64}, 4, 2),
        ({"BLOCK_L": 128, "BLOCK_S": 64}, 8, 2),
    ),
    key=["BLOCK_P", "BLOCK_N", "CHUNK", "H", "G"],
)
@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_target(
    x,
    dt,
    a,
    B,
    C,
    dy,
    entering,
    dC,
    da_inter,
    chunk_start,
    chunk_len,
    T,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    BLOCK_L: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    l_first = tl.program_id(0) * BLOCK_L
    c = tl.program_id(1)
    g = tl.program_id(2)
    length = tl.load(chunk_len + c)
    if l_first >= length:
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    offs_l = l_first + tl.arange(0, BLOCK_L)
    mask_l = offs_l < length
    t_l = start + offs_l
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < P
    mask_n = offs_n < N
    mask_ln = mask_l[:, None] & mask_n[None, :]
    c_ptrs = (t_l[:, None] * G + g) * N + offs_n[None, :]
    # [BLOCK_L, BLOCK_N]
    c_l = tl.load(C + c_ptrs, mask=mask_ln, other=0.0)
    dc = tl.zeros([BLOCK_L, BLOCK_N], dtype=tl.float32)
    heads_per_group = H // G
    for hh in range(heads_per_group):
        h = g * heads_per_group + hh
        a_l = tl.load(a + h * T + t_l, mask=mask_l, other=0.0)
        dy_l = tl.load(
            dy + (t_l[:, None] * H + h) * P + offs_p[None, :], mask=mask_l[:, None] & mask_p[None, :], other=0.0
        )
        # [BLOCK_P, BLOCK_N]
        s_in = tl.load(
            entering + ((c * H + h).to(tl.int64) * P + offs_p[:, None]) * N + offs_n[None, :],
            mask=mask_p[:, None] & mask_n[None, :],
            other=0.0,
        )
        from_start = tl.where(mask_l, tl.exp(a_l), 0.0)
        dy_state = tl.dot(dy_l, s_in.to(dy_l.dtype)) * from_start[:, None]
        dc += dy_state
        tl.store(da_inter + h * T + t_l, tl.sum(dy_state * c_l.to(tl.float32), axis=1), mask=mask_l)
        for s0 in range(0, l_first + BLOCK_L, BLOCK_S):
            offs_s = s0 + tl.arange(0, BLOCK_S)
            mask_s = offs_s < length
            t_s = start + offs_s
            a_s = tl.load(a + h * T + t_s, mask=mask_s, other=0.0)
            dt_s = tl.load(dt + t_s * H + h, mask=mask_s, other=0.0).to(tl.float32)
            x_s = tl.load(
                x + (t_s[:, None] * H + h) * P + offs_p[None, :], mask=mask_s[:, None] & mask_p[None, :], other=0.0
            )
            b_s = tl.load(
                B + (t_s[:, None] * G + g) * N + offs_n[None, :], mask=mask_s[:, None] & mask_n[None, :], other=0.0
            )
            keep = (offs_l[:, None] >= offs_s[None, :]) & mask_s[None, :]
            decay = tl.exp(tl.where(keep, a_l[:, None] - a_s[None, :], float("-inf")))
            # [BLOCK_L, BLOCK_S]: dy_l.v_s
            dyv = tl.dot(dy_l, tl.trans(x_s)) * dt_s[None, :]
            dc += tl.dot((dyv * decay).to(b_s.dtype), b_s)
    tl.store(dC + c_ptrs, dc.to(dC.dtype.element_ty), mask=mask_ln)


def chunk_scan_bwd(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    dy: torch.Tensor,
    entering: torch.Tensor,
    dleaving: torch.Tensor,
    da: torch.Tensor,
    plan: ChunkPlan,
) -> tuple[torch.Tensor, ...]:
    """Returns dx, dt's direct part (fp32), dB, dC, dD (or None) and adds every decay gradient into `da`."""
    T, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    block_p = max(16, triton.next_power_of_2(P))
    block_n = max(16, triton.next_power_of_2(N))
    dx = torch.empty_like(x)
    ddt_direct = torch.empty(T, H, device=x.device, dtype=torch.float32)
    dB = torch.empty_like(B)
    dC = torch.empty_like(C)
    dD = torch.zeros(H, device=x.device, dtype=torch.float32)
    da_inter = torch.empty_like(da)

    def grid(block: str):
        return lambda meta: (triton.cdiv(plan.chunk_size, meta[block]), plan.num_chunks, G)

    _ssd_bwd_kernel_source[grid("BLOCK_S")](
        x, dt, a, B, C, D, dy, dleaving, dx, ddt_direct, dB, da, dD, plan.chunk_start, plan.chunk_len, T,
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, HAS_D=D is not None, BLOCK_P=block_p, BLOCK_N=block_n,
    )  # fmt: skip
    _ssd_bwd_kernel_target[grid("BLOCK_L")](
        x, dt, a, B, C, dy, entering, dC, da_inter, plan.chunk_start, plan.chunk_len, T,
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, BLOCK_P=block_p, BLOCK_N=block_n,
    )  # fmt: skip
    da += da_inter
    return dx, ddt_direct, dB, dC, dD if D is not None else None
