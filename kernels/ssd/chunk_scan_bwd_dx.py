"""SSD backward for x, dt's direct use, D and the chunk states, one document, head and BLOCK_P head-dim lanes per
program, walking the document backwards in blocks of BLOCK_M tokens.

With v_s = dt_s x_s: dv_s = sum_{l>=s} (C_l.B_s) exp(a_l - a_s) dy_l + exp(a_last - a_s) dS_out B_s. Before
block [m0, m1) the program holds the gradient carried back from everything after it, Q(m1) = exp(a_last -
a_{m1-1}) dS_out^T + sum_{l>=m1} exp(a_l - a_{m1-1}) C_l^T dy_l (fp32, on chip), so every later token and the
leaving state reach the block through one N-deep product B_s Q(m1) scaled by exp(a_{m1-1} - a_s); only the
diagonal BLOCK_M x BLOCK_M scores need the pairwise exp. This is the forward output kernel's walk in reverse:
no C.B score tensor, and every exponent is <= 0. At a chunk's first token Q is the gradient of the state
entering it, so the walk carries it on into the chunk before (what a separate backward state walk used to
compute), leaving each chunk's dS_out for group_gradient and its decay's gradient <dS_out, S_in> on the way: at
bench.ssd's main shape on an H100 that pass and the per-chunk dx walk took 1.081 ms, this walk 0.962
(bench/results/ssd.md run 15).

The decay gradient inside a chunk is left to `score_gradient` and `group_gradient`: each of its terms is added to
one token and taken from another, and only when both come from the same fp32 product do they cancel as they must
(v_s.dv_s from this walk, whose scores are rounded to bf16 for the tensor cores, put dA 20% off in an fp64
emulation of one chunk at the bf16 tests' inputs).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fast_exp import exp_ftz
from gristmill.kernels.ssd.blocks import (
    accumulate, document_walk_start, group_rows, head_rows, head_state_lanes, lane_width, load_head_state,
    state_offsets, token_block,
)
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates, document_walk_grid, head_dim_blocks_within_lanes


@triton.autotune(
    candidates(
        ({"BLOCK_M": 64, "BLOCK_P": 64}, 4, 2),
        ({"BLOCK_M": 64, "BLOCK_P": 64}, 4, 3),
        ({"BLOCK_M": 64, "BLOCK_P": 64}, 8, 1),
        ({"BLOCK_M": 64, "BLOCK_P": 64}, 8, 2),
        ({"BLOCK_M": 128, "BLOCK_P": 64}, 8, 2),
        ({"BLOCK_M": 32, "BLOCK_P": 64}, 4, 3),
    ),
    key=["P", "N", "CHUNK"],
    prune_configs_by={"early_config_prune": head_dim_blocks_within_lanes},
    # take atomic adds, so every tuning trial starts them from zero
    reset_to_zero=["ddt_direct", "dD", "dchunk_decay"],
)
@triton.jit(do_not_specialize=["T", "NUM_CHUNKS"])
def _ssd_bwd_kernel_dx(
    x,
    dt,
    a,
    B,
    C,
    D,
    dy,
    entering,
    dlast,
    dleaving,
    dfirst,
    dx,
    ddt_direct,
    dD,
    dchunk_decay,
    chunk_start,
    chunk_len,
    doc_chunk_offsets,
    longest_first,
    T,
    NUM_CHUNKS,
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
    HAS_LAST: tl.constexpr,
    HAS_FIRST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    h = tl.program_id(1)
    doc = tl.load(longest_first + tl.program_id(2))
    g = h // (H // G)
    offs_p, mask_p, offs_n, mask_n = head_state_lanes(P, N, BLOCK_P, BLOCK_N, tl.program_id(0))
    state_lanes = mask_n[:, None] & mask_p[None, :]
    d = tl.load(D + h).to(tl.float32) if HAS_D else 0.0
    k0, num_chunks, carried = document_walk_start(
        dlast, doc_chunk_offsets, doc, h, offs_p, mask_p, offs_n, mask_n, H, P, N, HAS_LAST, BLOCK_P, BLOCK_N
    )
    dy_dot_x = tl.zeros([BLOCK_M], dtype=tl.float32)
    for j in range(num_chunks):
        c = k0 + num_chunks - 1 - j
        # the carry is now the gradient of the state leaving chunk c: group_gradient's dB takes it, and the chunk's
        # decay gets <dS_out, S_in>
        tl.store(dleaving + state_offsets(c, h, offs_p, offs_n, H, P, N), carried.to(dleaving.dtype.element_ty),
                 mask=state_lanes)
        s_in = load_head_state(entering, c, h, offs_p, mask_p, offs_n, mask_n, H, P, N)
        accumulate(dchunk_decay + h * NUM_CHUNKS + c, tl.sum(tl.sum(carried * s_in, axis=1), axis=0))
        start = tl.load(chunk_start + c).to(tl.int64)
        length = tl.load(chunk_len + c)
        a_after = tl.load(a + h * T + start + length - 1)  # a at the block's last token: Q is scaled from there
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
            # the carried gradient moves on first (dv's inter-block product takes its old value, kept in bf16),
            # and through dy's [tokens, P] rows rather than C's wider [tokens, N] ones: on sm_90 (triton 3.6)
            # 1.25x faster than updating after that product with C scaled (bench/results/ssd.md run 13)
            to_after = exp_ftz(tl.where(mask_m, a_after - a_m, float("-inf")))
            carried_in = carried.to(b_m.dtype)
            a_before = tl.load(a + h * T + start + m0 - 1, mask=m0 > 0, other=0.0)  # a is 0 before the chunk
            from_before = exp_ftz(tl.where(mask_m, a_m - a_before, float("-inf")))
            carried = tl.dot(
                tl.trans(c_m), (dy_m * from_before[:, None]).to(dy_m.dtype), acc=carried * exp_ftz(a_after - a_before)
            )
            a_after = a_before
            # [BLOCK_M, BLOCK_M]: M transposed, sources as rows
            keep = (offs_m[None, :] >= offs_m[:, None]) & mask_m[None, :]
            decay = exp_ftz(tl.where(keep, a_m[None, :] - a_m[:, None], float("-inf")))
            scores = tl.dot(b_m, tl.trans(c_m)) * decay
            dv = tl.dot(scores.to(dy_m.dtype), dy_m)
            dv += tl.dot(b_m, carried_in) * to_after[:, None]
            x_f = x_m.to(tl.float32)
            ddt_m = tl.sum(dv * x_f, axis=1)
            if BLOCK_P < P:  # the head's other lanes add theirs
                accumulate(ddt_direct + h * T + t_m, ddt_m, mask=mask_m)
            else:
                tl.store(ddt_direct + h * T + t_m, ddt_m, mask=mask_m)
            grad_x = dv * dt_m[:, None]
            if HAS_D:
                dy_f = dy_m.to(tl.float32)
                grad_x += d * dy_f
                dy_dot_x += tl.sum(dy_f * x_f, axis=1)
            dx_rows, _ = head_rows(t_m, mask_m, stride_dx, h, offs_p, mask_p, P)
            tl.store(dx + dx_rows, grad_x.to(dx.dtype.element_ty), mask=mask_mp)
    if HAS_FIRST:
        tl.store(dfirst + state_offsets(doc, h, offs_p, offs_n, H, P, N), carried, mask=state_lanes)
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
    entering: torch.Tensor,
    dfinal_state: torch.Tensor | None,
    plan: ChunkPlan,
    keep_initial_gradient: bool,
    dx: torch.Tensor,
    dD: torch.Tensor,
    dchunk_decay: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Writes dx into `dx` (`[T, H, P]`, contiguous rows, any row stride) and adds D's gradient (with D) and each
    chunk's decay gradient into the zeroed fp32 `dD` `[H]` and `dchunk_decay` `[H, num_chunks]`. Returns dt's
    direct part (`[H, T]` fp32), the gradient of the state leaving each chunk (`[num_chunks, H, P, N]` in the
    dtype of `entering`, the forward's chunk states; spare chunks unwritten) and the initial states' gradient
    (`[n_docs, H, P, N]` fp32; None unless kept). x, B, C and dy may be row-strided too; `dfinal_state` (None:
    zero) is contiguous."""
    T, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    ddt_direct = torch.zeros_like(a)
    dleaving = torch.empty_like(entering)
    dfirst = None
    if keep_initial_gradient:
        dfirst = torch.empty(plan.num_docs, H, P, N, device=x.device, dtype=torch.float32)
    _ssd_bwd_kernel_dx[document_walk_grid(P, H, plan.num_docs)](
        x, dt, a, B, C, D, dy, entering, dfinal_state, dleaving, dfirst, dx, ddt_direct, dD, dchunk_decay,
        plan.chunk_start, plan.chunk_len, plan.doc_chunk_offsets, plan.longest_first, T, plan.num_chunks,
        x.stride(0), B.stride(0), C.stride(0), dy.stride(0), dx.stride(0),
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, HAS_D=D is not None,
        HAS_LAST=dfinal_state is not None, HAS_FIRST=keep_initial_gradient,
        BLOCK_N=lane_width(N),
    )  # fmt: skip
    return ddt_direct, dleaving, dfirst
