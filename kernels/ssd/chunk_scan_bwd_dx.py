"""SSD backward for x, dt's direct use and D, one chunk and head per program, walking the chunk backwards in
blocks of BLOCK_M tokens.

With v_s = dt_s x_s: dv_s = sum_{l>=s} (C_l.B_s) exp(a_l - a_s) dy_l + exp(a_last - a_s) dS_out B_s. Before
block [m0, m1) the program holds the gradient carried back from everything after it, Q(m1) = exp(a_last -
a_{m1-1}) dS_out^T + sum_{l>=m1} exp(a_l - a_{m1-1}) C_l^T dy_l (fp32, on chip), so every later token and the
leaving state reach the block through one N-deep product B_s Q(m1) scaled by exp(a_{m1-1} - a_s); only the
diagonal BLOCK_M x BLOCK_M scores need the pairwise exp. This is the forward output kernel's walk in reverse:
no C.B score tensor, and every exponent is <= 0.

The decay gradient is left to `score_gradient` and `group_gradient`: each of its terms is added to one token
and taken from another, and only when both come from the same fp32 product do they cancel as they must
(v_s.dv_s from this walk, whose scores are rounded to bf16 for the tensor cores, put dA 20% off in an fp64
emulation of one chunk at the bf16 tests' inputs).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.ssd.blocks import (
    accumulate, chunk_head_state, group_rows, head_chunk_program, head_rows, head_state_lanes, lane_width, token_block,
)
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates


@triton.autotune(
    candidates(
        ({"BLOCK_M": 64}, 4, 2),
        ({"BLOCK_M": 64}, 4, 3),
        ({"BLOCK_M": 64}, 8, 1),
        ({"BLOCK_M": 64}, 8, 2),
        ({"BLOCK_M": 128}, 8, 2),
        ({"BLOCK_M": 32}, 4, 3),
    ),
    key=["BLOCK_P", "BLOCK_N", "CHUNK"],
    reset_to_zero=["dD"],  # takes atomic adds, so every tuning trial starts it from zero
)
@triton.jit(do_not_specialize=["T"])
def _ssd_bwd_kernel_dx(
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
    dD,
    chunk_start,
    chunk_len,
    T,
    stride_x,
    stride_b,
    stride_c,
    stride_dy,
    stride_dx,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    HAS_D: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    h, c, length = head_chunk_program(chunk_len)
    if length <= 0:
        return
    start = tl.load(chunk_start + c).to(tl.int64)
    g = h // (H // G)
    offs_p, mask_p, offs_n, mask_n = head_state_lanes(P, N, BLOCK_P, BLOCK_N)
    d = tl.load(D + h).to(tl.float32) if HAS_D else 0.0
    carried = chunk_head_state(dleaving, c, h, offs_p, mask_p, offs_n, mask_n, H, P, N)
    a_after = tl.load(a + h * T + start + length - 1)  # a at the block's last token: Q is scaled from there
    dy_dot_x = tl.zeros([BLOCK_M], dtype=tl.float32)
    num_blocks = tl.cdiv(length, BLOCK_M)
    for i in range(num_blocks):
        m0 = (num_blocks - 1 - i) * BLOCK_M
        offs_m, mask_m, t_m = token_block(start, m0, length, BLOCK_M)
        a_m = tl.load(a + h * T + t_m, mask=mask_m, other=0.0)
        dt_m = tl.load(dt + h * T + t_m, mask=mask_m, other=0.0)
        # [BLOCK_M, BLOCK_N]
        b_rows, mask_mn = group_rows(t_m, mask_m, stride_b, g, offs_n, mask_n, N)
        c_rows, _ = group_rows(t_m, mask_m, stride_c, g, offs_n, mask_n, N)
        b_m = tl.load(B + b_rows, mask=mask_mn, other=0.0)
        c_m = tl.load(C + c_rows, mask=mask_mn, other=0.0)
        # [BLOCK_M, BLOCK_P]
        dy_rows, mask_mp = head_rows(t_m, mask_m, stride_dy, h, offs_p, mask_p, P)
        dy_m = tl.load(dy + dy_rows, mask=mask_mp, other=0.0)
        x_rows, _ = head_rows(t_m, mask_m, stride_x, h, offs_p, mask_p, P)
        x_m = tl.load(x + x_rows, mask=mask_mp, other=0.0)
        # the carried gradient moves on first (dv's inter-block product takes its old value, kept in bf16), and
        # through dy's [tokens, P] rows rather than C's wider [tokens, N] ones: on sm_90 (triton 3.6) 1.25x faster
        # than updating after that product with C scaled (bench/results/ssd.md run 13)
        to_after = tl.exp(tl.where(mask_m, a_after - a_m, float("-inf")))
        carried_in = carried.to(b_m.dtype)
        a_before = tl.load(a + h * T + start + m0 - 1, mask=m0 > 0, other=0.0)  # a is 0 before the chunk
        from_before = tl.exp(tl.where(mask_m, a_m - a_before, float("-inf")))
        carried = tl.dot(
            tl.trans(c_m), (dy_m * from_before[:, None]).to(dy_m.dtype), acc=carried * tl.exp(a_after - a_before)
        )
        a_after = a_before
        # [BLOCK_M, BLOCK_M]: M transposed, sources as rows
        keep = (offs_m[None, :] >= offs_m[:, None]) & mask_m[None, :]
        decay = tl.exp(tl.where(keep, a_m[None, :] - a_m[:, None], float("-inf")))
        scores = tl.dot(b_m, tl.trans(c_m)) * decay
        dv = tl.dot(scores.to(dy_m.dtype), dy_m)
        dv += tl.dot(b_m, carried_in) * to_after[:, None]
        x_f = x_m.to(tl.float32)
        tl.store(ddt_direct + h * T + t_m, tl.sum(dv * x_f, axis=1), mask=mask_m)
        grad_x = dv * dt_m[:, None]
        if HAS_D:
            dy_f = dy_m.to(tl.float32)
            grad_x += d * dy_f
            dy_dot_x += tl.sum(dy_f * x_f, axis=1)
        dx_rows, _ = head_rows(t_m, mask_m, stride_dx, h, offs_p, mask_p, P)
        tl.store(dx + dx_rows, grad_x.to(dx.dtype.element_ty), mask=mask_mp)
    if HAS_D:
        accumulate(dD + h, tl.sum(dy_dot_x, axis=0))


def chunk_scan_bwd_dx(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    dy: torch.Tensor,
    dleaving: torch.Tensor,
    plan: ChunkPlan,
    dx: torch.Tensor,
    dD: torch.Tensor,
) -> torch.Tensor:
    """Writes dx into `dx` (`[T, H, P]`, contiguous rows, any row stride) and, with D, adds D's gradient into the
    zeroed fp32 `dD` `[H]`; returns dt's direct part (`[H, T]` fp32). x, B, C and dy may be row-strided too."""
    T, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    ddt_direct = torch.empty_like(a)
    _ssd_bwd_kernel_dx[(H, plan.num_chunks)](
        x, dt, a, B, C, D, dy, dleaving, dx, ddt_direct, dD, plan.chunk_start, plan.chunk_len, T,
        x.stride(0), B.stride(0), C.stride(0), dy.stride(0), dx.stride(0),
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, HAS_D=D is not None,
        BLOCK_P=lane_width(P),
        BLOCK_N=lane_width(N),
    )  # fmt: skip
    return ddt_direct
