"""SSD output and chunk states, one document, head and BLOCK_P head-dim lanes per program, walking the document in
blocks of BLOCK_M tokens.

y_l = exp(a_l) C_l S_in + sum_{s<=l} (C_l.B_s) exp(a_l - a_s) dt_s x_s + D x_l within a chunk. Before block m0
the program holds the state after the tokens before it, S(m0) = exp(a_{m0-1}) S_in + sum_{s<m0}
exp(a_{m0-1} - a_s) dt_s x_s B_s^T (fp32, on chip), so every earlier block reaches block m0 through one
N-deep product C_m S(m0) scaled by exp(a_l - a_{m0-1}); only the diagonal BLOCK_M x BLOCK_M scores need the
pairwise exp. Against scoring every earlier block, that is a third fewer tensor-core flops and a quarter of the
exps, and no program waits on a short causal loop. Every exponent is <= 0: the carry never overflows.
At a chunk's end the carry is the state entering the next chunk, so one walk over the whole document also
writes every chunk's S_in for the backward (a separate state walk used to; at bench.ssd's main shape on an H100
the two passes took 0.807 ms, this walk 0.613, bench/results/ssd.md run 15). Documents launch longest first.
The carry's fp32 [N, BLOCK_P] tile dominates the registers: a whole head dim of 128 spills on sm_90 (triton
3.6: ~1 KB per thread at 4 warps), so wide heads are split over programs that each recompute the C.B scores;
the carry's update scales x's [tokens, BLOCK_P] rows, half as many values as B's [tokens, N] ones.
dt and `a` (restarting at each chunk) are head-major `[H, T]`. x, B and C may be column slices of a wider
tensor (each token row addressed through its own stride); y is contiguous.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.fast_exp import exp_ftz
from gristmill.kernels.ssd.blocks import document_walk_start, head_state_lanes, lane_width, state_offsets
from gristmill.kernels.ssd.documents import ChunkPlan
from gristmill.kernels.ssd.tuning import candidates, document_walk_grid, head_dim_blocks_within_lanes


# H100 triton 3.6 (bench/results/ssd.md run 11): BLOCK_M 64 wins at head dims 64 and 128; 8 warps, BLOCK_P 32,
# and a whole head dim of 128 per program were 1.5-2x slower. With the carry updated before the diagonal (run 13),
# one stage beat two at head dim 64 (0.595 against 0.670 ms)
@triton.autotune(
    candidates(
        ({"BLOCK_M": 64, "BLOCK_P": 64}, 4, 1),
        ({"BLOCK_M": 64, "BLOCK_P": 64}, 4, 2),
        ({"BLOCK_M": 32, "BLOCK_P": 64}, 4, 3),
    ),
    key=["P", "N", "CHUNK"],
    prune_configs_by={"early_config_prune": head_dim_blocks_within_lanes},
)
@triton.jit(do_not_specialize=["T"])
def _ssd_fwd_kernel_output(
    x,
    dt,
    a,
    B,
    C,
    D,
    first,
    entering,
    last,
    y,
    chunk_start,
    chunk_len,
    doc_chunk_offsets,
    longest_first,
    T,
    stride_x,
    stride_b,
    stride_c,
    stride_y,
    H: tl.constexpr,
    G: tl.constexpr,
    P: tl.constexpr,
    N: tl.constexpr,
    CHUNK: tl.constexpr,
    HAS_D: tl.constexpr,
    HAS_FIRST: tl.constexpr,
    HAS_LAST: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    h = tl.program_id(1)
    doc = tl.load(longest_first + tl.program_id(2))
    g = h // (H // G)
    offs_p, mask_p, offs_n, mask_n = head_state_lanes(P, N, BLOCK_P, BLOCK_N, tl.program_id(0))
    d = tl.load(D + h).to(tl.float32) if HAS_D else 0.0
    k0, num_chunks, state = document_walk_start(
        first, doc_chunk_offsets, doc, h, offs_p, mask_p, offs_n, mask_n, H, P, N, HAS_FIRST, BLOCK_P, BLOCK_N
    )
    state_lanes = mask_n[:, None] & mask_p[None, :]
    for j in range(num_chunks):
        c = k0 + j
        # the backward's walks start each chunk from its entering state
        tl.store(entering + state_offsets(c, h, offs_p, offs_n, H, P, N), state.to(entering.dtype.element_ty),
                 mask=state_lanes)
        start = tl.load(chunk_start + c).to(tl.int64)
        length = tl.load(chunk_len + c)
        a_before = 0.0  # a just before the block: the state is exp(-a_before)-scaled from there; `a` restarts per chunk
        for m0 in range(0, length, BLOCK_M):
            offs_m = m0 + tl.arange(0, BLOCK_M)
            mask_m = offs_m < length
            t_m = start + offs_m
            a_m = tl.load(a + h * T + t_m, mask=mask_m, other=0.0)
            dt_m = tl.load(dt + h * T + t_m, mask=mask_m, other=0.0)
            # [BLOCK_M, BLOCK_N]
            group_cols = g * N + offs_n[None, :]
            mask_mn = mask_m[:, None] & mask_n[None, :]
            c_m = tl.load(C + t_m[:, None] * stride_c + group_cols, mask=mask_mn, other=0.0)
            b_m = tl.load(B + t_m[:, None] * stride_b + group_cols, mask=mask_mn, other=0.0)
            # [BLOCK_M, BLOCK_P]
            head_cols = h * P + offs_p[None, :]
            mask_mp = mask_m[:, None] & mask_p[None, :]
            x_m = tl.load(x + t_m[:, None] * stride_x + head_cols, mask=mask_mp, other=0.0)
            carried = exp_ftz(tl.where(mask_m, a_m - a_before, float("-inf")))
            acc = tl.dot(c_m, state.to(x_m.dtype)) * carried[:, None]
            # the carry moves on right after its last reader, before the diagonal scores: on sm_90 (triton 3.6)
            # this order ran the kernel 1.09x faster than updating at the block's end (bench/results/ssd.md run 13)
            a_after = tl.load(a + h * T + start + tl.minimum(m0 + BLOCK_M, length) - 1)
            to_after = tl.where(mask_m, exp_ftz(a_after - a_m) * dt_m, 0.0)
            state = state * exp_ftz(a_after - a_before) + tl.dot(
                tl.trans(b_m), (x_m * to_after[:, None]).to(x_m.dtype)
            )
            a_before = a_after
            keep = offs_m[:, None] >= offs_m[None, :]
            decay = exp_ftz(tl.where(keep, a_m[:, None] - a_m[None, :], float("-inf")))
            scores = tl.dot(c_m, tl.trans(b_m)) * decay * dt_m[None, :]
            acc += tl.dot(scores.to(x_m.dtype), x_m)
            if HAS_D:
                acc += d * x_m.to(tl.float32)
            tl.store(y + t_m[:, None] * stride_y + head_cols, acc.to(y.dtype.element_ty), mask=mask_mp)
    if HAS_LAST:
        tl.store(last + state_offsets(doc, h, offs_p, offs_n, H, P, N), state, mask=state_lanes)


def chunk_scan_fwd(
    x: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None,
    initial_state: torch.Tensor | None,
    plan: ChunkPlan,
    keep_final_state: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """y `[T, H, P]` (x's dtype), the state entering each chunk `[num_chunks, H, P, N]` in x's dtype (spare chunks
    unwritten) and each document's final state `[n_docs, H, P, N]` in fp32 (None unless kept), from x `[T, H, P]`,
    dt and `a` `[H, T]`, B and C `[T, G, N]` and the documents' initial states (None: zero)."""
    T, H, P = x.shape
    G, N = B.shape[1], B.shape[2]
    y = torch.empty(T, H, P, device=x.device, dtype=x.dtype)
    entering = torch.empty(plan.num_chunks, H, P, N, device=x.device, dtype=x.dtype)
    last = torch.empty(plan.num_docs, H, P, N, device=x.device, dtype=torch.float32) if keep_final_state else None

    _ssd_fwd_kernel_output[document_walk_grid(P, H, plan.num_docs)](
        x, dt, a, B, C, D, initial_state, entering, last, y,
        plan.chunk_start, plan.chunk_len, plan.doc_chunk_offsets, plan.longest_first, T,
        x.stride(0), B.stride(0), C.stride(0), y.stride(0),
        H=H, G=G, P=P, N=N, CHUNK=plan.chunk_size, HAS_D=D is not None,
        HAS_FIRST=initial_state is not None, HAS_LAST=keep_final_state,
        BLOCK_N=lane_width(N),
    )  # fmt: skip
    return y, entering, last
