"""Backward kernels: delta = rowsum(dO * O), then dk/dv per key tile and dq per query tile, no atomics.

dk and dv of a kv head sum over its whole q-head group inside one program, so grouped-query attention
needs no reduction pass. Probabilities are recomputed from the saved base-2 log-sum-exp.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.attention.configs import AUTOTUNE_KEY, key_grad_configs, query_grad_configs
from gristmill.kernels.attention.forward import LOG2E
from gristmill.kernels.attention.masking import key_ranges, query_ranges, visible
from gristmill.kernels.attention.tile_dot import tile_dot

DELTA_BLOCK_T = 64


@triton.jit(do_not_specialize=["total_tokens", "stride_delta_h"])
def _attention_bwd_delta_kernel(
    o, do, delta, stride_ot, stride_oh, stride_dot, stride_doh, stride_delta_h, total_tokens,
    HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr,
):
    head = tl.program_id(1)
    rows = (tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows[:, None] < total_tokens
    o_tile = tl.load(o + rows[:, None] * stride_ot + head * stride_oh + offs_d[None, :], mask=row_ok, other=0.0)
    do_tile = tl.load(do + rows[:, None] * stride_dot + head * stride_doh + offs_d[None, :], mask=row_ok, other=0.0)
    row_sum = tl.sum(o_tile.to(tl.float32) * do_tile.to(tl.float32), 1)
    tl.store(delta + head * stride_delta_h + rows, row_sum, mask=rows < total_tokens)


@triton.jit
def _attention_bwd_key_tiles(
    dk_acc, dv_acc, k_tile, v_tile, cols, q_base, do_base, lse_base, delta_base, stride_qt, stride_dot,
    start, end, seqlen, window, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    MASKED: tl.constexpr,
):
    offs_m = tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    for m0 in range(start, end, BLOCK_M):
        rows = m0 + offs_m
        q_ptrs = q_base + rows[:, None] * stride_qt + offs_d[None, :]
        do_ptrs = do_base + rows[:, None] * stride_dot + offs_d[None, :]
        if MASKED:
            q_tile = tl.load(q_ptrs, mask=rows[:, None] < seqlen, other=0.0)  # [BM, D]
            do_tile = tl.load(do_ptrs, mask=rows[:, None] < seqlen, other=0.0)  # [BM, D]
            lse_row = tl.load(lse_base + rows, mask=rows < seqlen, other=0.0)  # [BM]
            delta_row = tl.load(delta_base + rows, mask=rows < seqlen, other=0.0)  # [BM]
        else:
            q_tile = tl.load(q_ptrs)
            do_tile = tl.load(do_ptrs)
            lse_row = tl.load(lse_base + rows)
            delta_row = tl.load(delta_base + rows)
        p_t = tl.math.exp2(tile_dot(k_tile, tl.trans(q_tile)) * qk_scale - lse_row[None, :])  # [BN, BM]
        if MASKED:
            p_t = tl.where(visible(rows[None, :], cols[:, None], seqlen, window, CAUSAL, HAS_WINDOW), p_t, 0.0)
        dv_acc += tile_dot(p_t.to(do_tile.dtype), do_tile)
        dp_t = tile_dot(v_tile, tl.trans(do_tile))  # [BN, BM]
        ds_t = p_t * (dp_t - delta_row[None, :])
        dk_acc += tile_dot(ds_t.to(q_tile.dtype), q_tile)
    return dk_acc, dv_acc


@triton.autotune(configs=key_grad_configs(), key=AUTOTUNE_KEY)
@triton.jit(do_not_specialize=["window", "stride_lse_h"])
def _attention_bwd_dkdv_kernel(
    q, k, v, do, lse, delta, dk, dv, cu_seqlens,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dkt, stride_dkh, stride_lse_h,
    softmax_scale, qk_scale, window, group,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    doc = tl.program_id(1)
    kv_head = tl.program_id(2)
    doc_start = tl.load(cu_seqlens + doc).to(tl.int64)
    seqlen = (tl.load(cu_seqlens + doc + 1) - doc_start).to(tl.int32)
    n0 = tl.program_id(0) * BLOCK_N  # first keys see the most queries: launched first
    if n0 >= seqlen:
        return
    cols = n0 + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    col_ok = cols[:, None] < seqlen
    k_tile = tl.load(k + (doc_start + cols[:, None]) * stride_kt + kv_head * stride_kh + offs_d[None, :],
                     mask=col_ok, other=0.0)  # [BN, D]
    v_tile = tl.load(v + (doc_start + cols[:, None]) * stride_vt + kv_head * stride_vh + offs_d[None, :],
                     mask=col_ok, other=0.0)  # [BN, D]
    dk_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo, mid_lo, mid_hi, hi = query_ranges(n0, seqlen, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    for member in range(group):
        head = kv_head * group + member
        q_base = q + doc_start * stride_qt + head * stride_qh
        do_base = do + doc_start * stride_dot + head * stride_doh
        lse_base = lse + head * stride_lse_h + doc_start
        delta_base = delta + head * stride_lse_h + doc_start
        dk_acc, dv_acc = _attention_bwd_key_tiles(
            dk_acc, dv_acc, k_tile, v_tile, cols, q_base, do_base, lse_base, delta_base, stride_qt, stride_dot,
            lo, mid_lo, seqlen, window, qk_scale, HEAD_DIM, BLOCK_M, CAUSAL, HAS_WINDOW, MASKED=True,
        )
        dk_acc, dv_acc = _attention_bwd_key_tiles(
            dk_acc, dv_acc, k_tile, v_tile, cols, q_base, do_base, lse_base, delta_base, stride_qt, stride_dot,
            mid_lo, mid_hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_M, CAUSAL, HAS_WINDOW, MASKED=False,
        )
        dk_acc, dv_acc = _attention_bwd_key_tiles(
            dk_acc, dv_acc, k_tile, v_tile, cols, q_base, do_base, lse_base, delta_base, stride_qt, stride_dot,
            mid_hi, hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_M, CAUSAL, HAS_WINDOW, MASKED=True,
        )
    out_offsets = (doc_start + cols[:, None]) * stride_dkt + kv_head * stride_dkh + offs_d[None, :]
    tl.store(dk + out_offsets, (dk_acc * softmax_scale).to(dk.dtype.element_ty), mask=col_ok)
    tl.store(dv + out_offsets, dv_acc.to(dv.dtype.element_ty), mask=col_ok)


@triton.jit
def _attention_bwd_query_tiles(
    dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k_base, v_base, stride_kt, stride_vt,
    start, end, seqlen, window, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    MASKED: tl.constexpr,
):
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_DIM)
    for n0 in range(start, end, BLOCK_N):
        cols = n0 + offs_n
        k_ptrs = k_base + cols[:, None] * stride_kt + offs_d[None, :]
        v_ptrs = v_base + cols[:, None] * stride_vt + offs_d[None, :]
        if MASKED:
            k_tile = tl.load(k_ptrs, mask=cols[:, None] < seqlen, other=0.0)  # [BN, D]
            v_tile = tl.load(v_ptrs, mask=cols[:, None] < seqlen, other=0.0)  # [BN, D]
        else:
            k_tile = tl.load(k_ptrs)
            v_tile = tl.load(v_ptrs)
        p = tl.math.exp2(tile_dot(q_tile, tl.trans(k_tile)) * qk_scale - lse_row[:, None])  # [BM, BN]
        if MASKED:
            p = tl.where(visible(rows[:, None], cols[None, :], seqlen, window, CAUSAL, HAS_WINDOW), p, 0.0)
        dp = tile_dot(do_tile, tl.trans(v_tile))  # [BM, BN]
        ds = p * (dp - delta_row[:, None])
        dq_acc += tile_dot(ds.to(k_tile.dtype), k_tile)
    return dq_acc


@triton.autotune(configs=query_grad_configs(), key=AUTOTUNE_KEY)
@triton.jit(do_not_specialize=["window", "stride_lse_h"])
def _attention_bwd_dq_kernel(
    q, k, v, do, lse, delta, dq, cu_seqlens,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dqt, stride_dqh, stride_lse_h,
    softmax_scale, qk_scale, window, group,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    doc = tl.program_id(1)
    head = tl.program_id(2)
    doc_start = tl.load(cu_seqlens + doc).to(tl.int64)
    seqlen = (tl.load(cu_seqlens + doc + 1) - doc_start).to(tl.int32)
    m0 = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M  # longest causal rows first
    if m0 >= seqlen:
        return
    kv_head = head // group
    rows = m0 + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_DIM)
    row_ok = rows[:, None] < seqlen
    q_tile = tl.load(q + (doc_start + rows[:, None]) * stride_qt + head * stride_qh + offs_d[None, :],
                     mask=row_ok, other=0.0)  # [BM, D]
    do_tile = tl.load(do + (doc_start + rows[:, None]) * stride_dot + head * stride_doh + offs_d[None, :],
                      mask=row_ok, other=0.0)  # [BM, D]
    lse_row = tl.load(lse + head * stride_lse_h + doc_start + rows, mask=rows < seqlen, other=0.0)
    delta_row = tl.load(delta + head * stride_lse_h + doc_start + rows, mask=rows < seqlen, other=0.0)
    k_base = k + doc_start * stride_kt + kv_head * stride_kh
    v_base = v + doc_start * stride_vt + kv_head * stride_vh
    dq_acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    lo, mid_lo, mid_hi, hi = key_ranges(m0, seqlen, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    dq_acc = _attention_bwd_query_tiles(
        dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k_base, v_base, stride_kt, stride_vt,
        lo, mid_lo, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW, MASKED=True,
    )
    dq_acc = _attention_bwd_query_tiles(
        dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k_base, v_base, stride_kt, stride_vt,
        mid_lo, mid_hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW, MASKED=False,
    )
    dq_acc = _attention_bwd_query_tiles(
        dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k_base, v_base, stride_kt, stride_vt,
        mid_hi, hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW, MASKED=True,
    )
    dq_ptrs = dq + (doc_start + rows[:, None]) * stride_dqt + head * stride_dqh + offs_d[None, :]
    tl.store(dq_ptrs, (dq_acc * softmax_scale).to(dq.dtype.element_ty), mask=row_ok)


def attention_backward(
    do: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    out: torch.Tensor,
    lse: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    causal: bool,
    window: int | None,
    softmax_scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) in the inputs' dtype, given dO and the forward's output and base-2 log-sum-exp."""
    total, heads_q, head_dim = q.shape
    heads_kv = k.shape[1]
    dq = torch.empty(total, heads_q, head_dim, dtype=q.dtype, device=q.device)
    dk = torch.empty(total, heads_kv, head_dim, dtype=k.dtype, device=k.device)
    dv = torch.empty(total, heads_kv, head_dim, dtype=v.dtype, device=v.device)
    num_docs = cu_seqlens.numel() - 1
    if max_seqlen == 0:
        return dq, dk, dv
    delta = torch.empty_like(lse)
    _attention_bwd_delta_kernel[(triton.cdiv(total, DELTA_BLOCK_T), heads_q)](
        out, do, delta, out.stride(0), out.stride(1), do.stride(0), do.stride(1), delta.stride(0), total,
        HEAD_DIM=head_dim, BLOCK_T=DELTA_BLOCK_T,
    )
    shared = dict(HEAD_DIM=head_dim, CAUSAL=causal, HAS_WINDOW=window is not None)
    scales = (softmax_scale, softmax_scale * LOG2E, window or 0, heads_q // heads_kv)
    _attention_bwd_dkdv_kernel[lambda meta: (triton.cdiv(max_seqlen, meta["BLOCK_N"]), num_docs, heads_kv)](
        q, k, v, do, lse, delta, dk, dv, cu_seqlens,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        dk.stride(0), dk.stride(1), lse.stride(0), *scales, **shared,
    )
    _attention_bwd_dq_kernel[lambda meta: (triton.cdiv(max_seqlen, meta["BLOCK_M"]), num_docs, heads_q)](
        q, k, v, do, lse, delta, dq, cu_seqlens,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), do.stride(0), do.stride(1),
        dq.stride(0), dq.stride(1), lse.stride(0), *scales, **shared,
    )
    return dq, dk, dv
