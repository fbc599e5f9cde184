"""Backward kernels: dq per query tile (which also writes delta = rowsum(dO * O)), then dk/dv per key tile; no atomics.

The dq kernel reads dO anyway, so it computes delta on the way and stores it for the dk/dv kernel, launched
after it on the same stream. dk and dv of a kv head sum over its whole q-head group inside one program (flat
loops over group member and query tile; loops per member spilled registers at D=128), so grouped-query
attention needs no reduction pass. Probabilities are recomputed from the saved base-2 log-sum-exp.

The dk/dv kernel streams q, dO, lse and delta tiles. Where it can (descriptors.py) it reads them through
tensor descriptors, and then masks every query tile in one loop: on an H100 the whole backward at L=8192
took 3.54 ms that way against 3.90 ms for the fastest pointer tile (bench/results/attention.md, session 3).
Through pointers separate loops stay faster: only the query tiles at the diagonal, the window edge and the
document end take the mask and bounds checks.
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.attention.configs import AUTOTUNE_KEY, key_grad_configs, query_grad_configs
from gristmill.kernels.attention.descriptors import (
    descriptors_usable,
    head_rows,
    row_statistics,
    set_query_blocks,
    statistic_rows,
    statistics_start,
)
from gristmill.kernels.attention.forward import LOG2E
from gristmill.kernels.attention.masking import key_ranges, query_ranges, visible
from gristmill.kernels.attention.tiles import document_span, load_rows, tile_dot


@triton.jit
def load_statistics(base, rows, seqlen, MASKED: tl.constexpr):
    """lse or delta of `rows`; zero past the document end when MASKED."""
    if MASKED:
        values = tl.load(base + rows, mask=rows < seqlen, other=0.0)
    else:
        values = tl.load(base + rows)
    return values


@triton.jit
def _attention_bwd_key_tiles(
    dk_acc, dv_acc, k_tile, v_tile, cols, q, do, lse, delta, doc_start, stat_start, first_head, stride_qt,
    stride_qh, stride_dot, stride_doh, stride_lse_h, start, end, group, seqlen, window, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    MASKED: tl.constexpr, DESCRIPTORS: tl.constexpr,
):
    """Query tiles [start, end) of every q head of the group, in one flat loop (one loop per head spilled)."""
    tiles_per_head = tl.cdiv(end - start, BLOCK_M)
    for step in range(0, group * tiles_per_head):
        member = step // tiles_per_head
        head = first_head + member
        first_row = start + (step - member * tiles_per_head) * BLOCK_M
        rows = first_row + tl.arange(0, BLOCK_M)
        if DESCRIPTORS:
            packed_row = (doc_start + first_row).to(tl.int32)
            q_tile = q.load([packed_row, head * HEAD_DIM])  # [BM, D]
            do_tile = do.load([packed_row, head * HEAD_DIM])  # [BM, D]
            lse_row = lse.load([head, stat_start + first_row]).reshape([BLOCK_M])
            delta_row = delta.load([head, stat_start + first_row]).reshape([BLOCK_M])
        else:
            q_tile = load_rows(q + doc_start * stride_qt + head * stride_qh, stride_qt, rows, seqlen, HEAD_DIM, MASKED)
            do_tile = load_rows(do + doc_start * stride_dot + head * stride_doh, stride_dot, rows, seqlen, HEAD_DIM,
                                MASKED)
            stat_offset = tl.multiple_of(head * stride_lse_h + stat_start, 4)
            lse_row = load_statistics(lse + stat_offset, rows, seqlen, MASKED)
            delta_row = load_statistics(delta + stat_offset, rows, seqlen, MASKED)
        qk_t = tile_dot(k_tile, tl.trans(q_tile))  # [BN, BM]
        dp_t = tile_dot(v_tile, tl.trans(do_tile))  # [BN, BM]
        p_t = tl.math.exp2(qk_t * qk_scale - lse_row[None, :])
        if MASKED:
            # rows past the document end hold the next document's values when read through a descriptor
            seen = visible(rows[None, :], cols[:, None], seqlen, window, CAUSAL, HAS_WINDOW) & (rows[None, :] < seqlen)
            p_t = tl.where(seen, p_t, 0.0)
        dv_acc = tile_dot(p_t.to(do_tile.dtype), do_tile, dv_acc)
        ds_t = p_t * (dp_t - delta_row[None, :])
        dk_acc = tile_dot(ds_t.to(q_tile.dtype), q_tile, dk_acc)
    return dk_acc, dv_acc


@triton.autotune(configs=key_grad_configs(set_query_blocks), key=AUTOTUNE_KEY + ["DESCRIPTORS"])
@triton.jit(do_not_specialize=["window", "stride_lse_h"])
def _attention_bwd_dkdv_kernel(
    q, k, v, do, lse, delta, dk, dv, cu_seqlens,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dkt, stride_dkh, stride_lse_h,
    softmax_scale, qk_scale, window, group,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, DESCRIPTORS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """q, do, lse and delta are tensor descriptors when DESCRIPTORS, else pointers."""
    kv_head = tl.program_id(2)
    doc_start, seqlen = document_span(cu_seqlens, tl.program_id(1))
    n0 = tl.program_id(0) * BLOCK_N  # first keys see the most queries: launched first
    if n0 >= seqlen:
        return
    cols = n0 + tl.arange(0, BLOCK_N)
    k_tile = load_rows(k + doc_start * stride_kt + kv_head * stride_kh, stride_kt, cols, seqlen, HEAD_DIM, True)
    v_tile = load_rows(v + doc_start * stride_vt + kv_head * stride_vh, stride_vt, cols, seqlen, HEAD_DIM, True)
    first_head = kv_head * group
    stat_start = tl.multiple_of(statistics_start(doc_start, tl.program_id(1)).to(tl.int32), 4)
    dk_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo, mid_lo, mid_hi, hi = query_ranges(n0, seqlen, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    if DESCRIPTORS:
        # one loop, every tile masked: with cheap loads the separate loops cost more than the mask (and spilled)
        mid_lo = hi
        mid_hi = hi
    # masked: diagonal and window edge; unmasked: fully visible tiles; masked: the tail past the window or the
    # document end
    dk_acc, dv_acc = _attention_bwd_key_tiles(
        dk_acc, dv_acc, k_tile, v_tile, cols, q, do, lse, delta, doc_start, stat_start, first_head, stride_qt,
        stride_qh, stride_dot, stride_doh, stride_lse_h, lo, mid_lo, group, seqlen, window, qk_scale,
        HEAD_DIM, BLOCK_M, CAUSAL, HAS_WINDOW, MASKED=True, DESCRIPTORS=DESCRIPTORS,
    )
    dk_acc, dv_acc = _attention_bwd_key_tiles(
        dk_acc, dv_acc, k_tile, v_tile, cols, q, do, lse, delta, doc_start, stat_start, first_head, stride_qt,
        stride_qh, stride_dot, stride_doh, stride_lse_h, mid_lo, mid_hi, group, seqlen, window, qk_scale,
        HEAD_DIM, BLOCK_M, CAUSAL, HAS_WINDOW, MASKED=False, DESCRIPTORS=DESCRIPTORS,
    )
    dk_acc, dv_acc = _attention_bwd_key_tiles(
        dk_acc, dv_acc, k_tile, v_tile, cols, q, do, lse, delta, doc_start, stat_start, first_head, stride_qt,
        stride_qh, stride_dot, stride_doh, stride_lse_h, mid_hi, hi, group, seqlen, window, qk_scale,
        HEAD_DIM, BLOCK_M, CAUSAL, HAS_WINDOW, MASKED=True, DESCRIPTORS=DESCRIPTORS,
    )
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
        qk = tile_dot(q_tile, tl.trans(k_tile))  # [BM, BN]
        dp = tile_dot(do_tile, tl.trans(v_tile))  # [BM, BN]
        p = tl.math.exp2(qk * qk_scale - lse_row[:, None])
        if MASKED:
            p = tl.where(visible(rows[:, None], cols[None, :], seqlen, window, CAUSAL, HAS_WINDOW), p, 0.0)
        ds = p * (dp - delta_row[:, None])
        dq_acc = tile_dot(ds.to(k_tile.dtype), k_tile, dq_acc)
    return dq_acc


@triton.autotune(configs=query_grad_configs(), key=AUTOTUNE_KEY)
@triton.jit(do_not_specialize=["window", "stride_lse_h"])
def _attention_bwd_dq_kernel(
    q, k, v, o, do, lse, delta, dq, cu_seqlens,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_ot, stride_oh, stride_dqt, stride_dqh, stride_lse_h,
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
    o_tile = load_rows(o + doc_start * stride_ot + head * stride_oh, stride_ot, rows, seqlen, HEAD_DIM, True)
    delta_row = tl.sum(o_tile.to(tl.float32) * do_tile.to(tl.float32), 1)
    stat_start = statistics_start(doc_start, tl.program_id(1))
    tl.store(delta + head * stride_lse_h + stat_start + rows, delta_row, mask=rows < seqlen)
    lse_row = tl.load(lse + head * stride_lse_h + stat_start + rows, mask=rows < seqlen, other=0.0)
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
    delta = row_statistics(heads_q, total, num_docs, q.device)
    flags = dict(HEAD_DIM=head_dim, CAUSAL=causal, HAS_WINDOW=window is not None)
    scalars = (softmax_scale, softmax_scale * LOG2E, window or 0, heads_q // heads_kv)
    input_strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                     do.stride(0), do.stride(1))
    _attention_bwd_dq_kernel[lambda meta: (triton.cdiv(max_seqlen, meta["BLOCK_M"]), num_docs, heads_q)](
        q, k, v, out, do, lse, delta, dq, cu_seqlens, *input_strides, out.stride(0), out.stride(1),
        dq.stride(0), dq.stride(1), lse.stride(0), *scalars, **flags,
    )
    query_sources = (q, do, lse, delta)
    use_descriptors = descriptors_usable(*query_sources)
    if use_descriptors:
        query_sources = (head_rows(q), head_rows(do), statistic_rows(lse), statistic_rows(delta))
    q_src, do_src, lse_src, delta_src = query_sources
    _attention_bwd_dkdv_kernel[lambda meta: (triton.cdiv(max_seqlen, meta["BLOCK_N"]), num_docs, heads_kv)](
        q_src, k, v, do_src, lse_src, delta_src, dk, dv, cu_seqlens, *input_strides, dk.stride(0), dk.stride(1),
        lse.stride(0), *scalars, **flags, DESCRIPTORS=use_descriptors,
    )
    return dq, dk, dv
