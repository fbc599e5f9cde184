"""Backward kernels: delta = rowsum(dO * O), then dk/dv per key tile and dq per query tile, no atomics.

dk and dv of a kv head sum over its whole q-head group inside one program (one flat loop over group member
and query tile, always masked: three loop copies per member spilled registers at D=128), so grouped-query
attention needs no reduction pass. Probabilities are recomputed from the saved base-2 log-sum-exp.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.attention.configs import AUTOTUNE_KEY, key_grad_configs, query_grad_configs
from gristmill.kernels.attention.forward import LOG2E
from gristmill.kernels.attention.masking import key_ranges, query_ranges, visible
from gristmill.kernels.attention.tiles import document_span, load_rows, tile_dot

DELTA_BLOCK_T = 64


@triton.jit(do_not_specialize=["total_tokens", "stride_delta_h"])
def _attention_bwd_delta_kernel(
    o, do, delta, stride_ot, stride_oh, stride_dot, stride_doh, stride_delta_h, total_tokens,
    HEAD_DIM: tl.constexpr, BLOCK_T: tl.constexpr,
):
    head = tl.program_id(1)
    rows = (tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)).to(tl.int64)
    o_tile = load_rows(o + head * stride_oh, stride_ot, rows, total_tokens, HEAD_DIM, True)
    do_tile = load_rows(do + head * stride_doh, stride_dot, rows, total_tokens, HEAD_DIM, True)
    row_sum = tl.sum(o_tile.to(tl.float32) * do_tile.to(tl.float32), 1)
    tl.store(delta + head * stride_delta_h + rows, row_sum, mask=rows < total_tokens)


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
    kv_head = tl.program_id(2)
    doc_start, seqlen = document_span(cu_seqlens, tl.program_id(1))
    n0 = tl.program_id(0) * BLOCK_N  # first keys see the most queries: launched first
    if n0 >= seqlen:
        return
    cols = n0 + tl.arange(0, BLOCK_N)
    k_tile = load_rows(k + doc_start * stride_kt + kv_head * stride_kh, stride_kt, cols, seqlen, HEAD_DIM, True)
    v_tile = load_rows(v + doc_start * stride_vt + kv_head * stride_vh, stride_vt, cols, seqlen, HEAD_DIM, True)
    dk_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo, _, _, hi = query_ranges(n0, seqlen, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    tiles_per_head = tl.cdiv(hi - lo, BLOCK_M)
    for step in range(0, group * tiles_per_head):  # one flat loop over (q head of the group, query tile)
        member = step // tiles_per_head
        head = kv_head * group + member
        rows = lo + (step - member * tiles_per_head) * BLOCK_M + tl.arange(0, BLOCK_M)
        q_tile = load_rows(q + doc_start * stride_qt + head * stride_qh, stride_qt, rows, seqlen, HEAD_DIM, True)
        do_tile = load_rows(do + doc_start * stride_dot + head * stride_doh, stride_dot, rows, seqlen, HEAD_DIM, True)
        lse_row = tl.load(lse + head * stride_lse_h + doc_start + rows, mask=rows < seqlen, other=0.0)  # [BM]
        delta_row = tl.load(delta + head * stride_lse_h + doc_start + rows, mask=rows < seqlen, other=0.0)  # [BM]
        p_t = tl.math.exp2(tile_dot(k_tile, tl.trans(q_tile)) * qk_scale - lse_row[None, :])  # [BN, BM]
        p_t = tl.where(visible(rows[None, :], cols[:, None], seqlen, window, CAUSAL, HAS_WINDOW), p_t, 0.0)
        dv_acc = tile_dot(p_t.to(do_tile.dtype), do_tile, dv_acc)
        dp_t = tile_dot(v_tile, tl.trans(do_tile))  # [BN, BM]
        ds_t = p_t * (dp_t - delta_row[None, :])
        dk_acc = tile_dot(ds_t.to(q_tile.dtype), q_tile, dk_acc)
    out_offsets = (doc_start + cols[:, None]) * stride_dkt + kv_head * stride_dkh + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(dk + out_offsets, (dk_acc * softmax_scale).to(dk.dtype.element_ty), mask=cols[:, None] < seqlen)
    tl.store(dv + out_offsets, dv_acc.to(dv.dtype.element_ty), mask=cols[:, None] < seqlen)


@triton.jit
def _attention_bwd_query_tiles(
    dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k_base, v_base, stride_kt, stride_vt,
    start, end, seqlen, window, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    MASKED: tl.constexpr,
):
    for n0 in range(start, end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        k_tile = load_rows(k_base, stride_kt, cols, seqlen, HEAD_DIM, MASKED)  # [BN, D]
        v_tile = load_rows(v_base, stride_vt, cols, seqlen, HEAD_DIM, MASKED)  # [BN, D]
        p = tl.math.exp2(tile_dot(q_tile, tl.trans(k_tile)) * qk_scale - lse_row[:, None])  # [BM, BN]
        if MASKED:
            p = tl.where(visible(rows[:, None], cols[None, :], seqlen, window, CAUSAL, HAS_WINDOW), p, 0.0)
        dp = tile_dot(do_tile, tl.trans(v_tile))  # [BM, BN]
        ds = p * (dp - delta_row[:, None])
        dq_acc = tile_dot(ds.to(k_tile.dtype), k_tile, dq_acc)
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
    head = tl.program_id(2)
    doc_start, seqlen = document_span(cu_seqlens, tl.program_id(1))
    m0 = (tl.num_programs(0) - 1 - tl.program_id(0)) * BLOCK_M  # longest causal rows first
    if m0 >= seqlen:
        return
    kv_head = head // group
    rows = m0 + tl.arange(0, BLOCK_M)
    q_tile = load_rows(q + doc_start * stride_qt + head * stride_qh, stride_qt, rows, seqlen, HEAD_DIM, True)
    do_tile = load_rows(do + doc_start * stride_dot + head * stride_doh, stride_dot, rows, seqlen, HEAD_DIM, True)
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
    dq_ptrs = dq + (doc_start + rows[:, None]) * stride_dqt + head * stride_dqh + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(dq_ptrs, (dq_acc * softmax_scale).to(dq.dtype.element_ty), mask=rows[:, None] < seqlen)


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
    flags = dict(HEAD_DIM=head_dim, CAUSAL=causal, HAS_WINDOW=window is not None)
    scalars = (softmax_scale, softmax_scale * LOG2E, window or 0, heads_q // heads_kv)
    input_strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                     do.stride(0), do.stride(1))
    _attention_bwd_dkdv_kernel[lambda meta: (triton.cdiv(max_seqlen, meta["BLOCK_N"]), num_docs, heads_kv)](
        q, k, v, do, lse, delta, dk, dv, cu_seqlens, *input_strides, dk.stride(0), dk.stride(1), lse.stride(0),
        *scalars, **flags,
    )
    _attention_bwd_dq_kernel[lambda meta: (triton.cdiv(max_seqlen, meta["BLOCK_M"]), num_docs, heads_q)](
        q, k, v, do, lse, delta, dq, cu_seqlens, *input_strides, dq.stride(0), dq.stride(1), lse.stride(0),
        *scalars, **flags,
    )
    return dq, dk, dv
