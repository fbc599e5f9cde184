"""SSD output: y = (inter-chunk) exp(a_l) S_in C_l + (intra-chunk) sum_{s<=l} (C_l.B_s) exp(a_l - a_s) dt_s x_s
+ D x_l, one block of tokens of one chunk and head per program; the L x L scores stay on chip. dt and `a` are
head-major `[H, T]`; S_in comes in the matrix-product dtype."""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.autotune(
    candidates(
        ({"BLOCK_M": 64, "BLOCK_S": 64}, 4, 2),
        ({"BLOCK_M": 64, "BLOCK_S": 64}, 4, 3),
        ({"BLOCK_M": 128, "BLOCK_S": 64}, 8, 2),
        ({"BLOCK_M": 128, "BLOCK_S": 64}, 8, 3),
        ({"BLOCK_M": 64, "BLOCK_S": 32}, 4, 4),
    ),
    key=["BLOCK_P", "BLOCK_N", "CHUNK"],
)
@triton.jit(do_not_specialize=["T"])
def _ssd_fwd_kernel_output(
    x,
    dt,
    a,
    B,
    C,
    D,
    entering,
    y,
    chunk_start,
    chunk_len,
    T,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    HAS_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    m0 = tl.program_id(0) * BLOCK_M
    c = tl.program_id(1)
    h = tl.program_id(2)
    length = tl.load(chunk_len + c)
    if m0 >= length:
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    g = h // (H // G)
    offs_m = m0 + tl.arange(0, BLOCK_M)
    mask_m = offs_m < length
    t_m = start + offs_m
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    mask_p = offs_p < P
    mask_n = offs_n < N
    a_m = tl.load(a + h * T + t_m, mask=mask_m, other=0.0)
    # [BLOCK_M, BLOCK_N]
    c_m = tl.load(C + (t_m[:, None] * G + g) * N + offs_n[None, :], mask=mask_m[:, None] & mask_n[None, :], other=0.0)
    # [BLOCK_N, BLOCK_P]
    s_in = tl.load(
        entering + ((c * H + h).to(tl.int64) * P + offs_p[None, :]) * N + offs_n[:, None],
        mask=mask_n[:, None] & mask_p[None, :],
        other=0.0,
    )
    acc = tl.dot(c_m, s_in) * tl.exp(a_m)[:, None]
    for s0 in range(0, m0 + BLOCK_M, BLOCK_S):
        offs_s = s0 + tl.arange(0, BLOCK_S)
        mask_s = offs_s < length
        t_s = start + offs_s
        a_s = tl.load(a + h * T + t_s, mask=mask_s, other=0.0)
        dt_s = tl.load(dt + h * T + t_s, mask=mask_s, other=0.0)
        b_s = tl.load(
            B + (t_s[:, None] * G + g) * N + offs_n[None, :], mask=mask_s[:, None] & mask_n[None, :], other=0.0
        )
        x_s = tl.load(
            x + (t_s[:, None] * H + h) * P + offs_p[None, :], mask=mask_s[:, None] & mask_p[None, :], other=0.0
        )
        keep = (offs_m[:, None] >= offs_s[None, :]) & mask_s[None, :]
        decay = tl.exp(tl.where(keep, a_m[:, None] - a_s[None, :], float("-inf")))
        scores = tl.dot(c_m, tl.trans(b_s)) * decay * dt_s[None, :]
        acc += tl.dot(scores.to(x_s.dtype), x_s)
    x_ptrs = (t_m[:, None] * H + h) * P + offs_p[None, :]
    mask_mp = mask_m[:, None] & mask_p[None, :]
    if HAS_D:
        acc += tl.load(D + h).to(tl.float32) * tl.load(x + x_ptrs, mask=mask_mp, other=0.0).to(tl.float32)
    tl.store(y + x_ptrs, acc.to(y.dtype.element_ty), mask=mask_mp)


def chunk_scan_fwd(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    entering: torch.Tensor,
    plan: ChunkPlan,
) -> torch.Tensor:
    T, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    y = torch.empty_like(x)

    def grid(meta: dict) -> tuple[int, int, int]:
        return (triton.cdiv(plan.chunk_size, meta["BLOCK_M"]), plan.num_chunks, H)

    _ssd_fwd_kernel_output[grid](
        x, dt, a, B, C, D, entering, y, plan.chunk_start, plan.chunk_len, T,
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, HAS_D=D is not None,
        BLOCK_P=max(16, triton.next_power_of_2(P)),
        BLOCK_N=max(16, triton.next_power_of_2(N)),
    )  # fmt: skip
    return y
