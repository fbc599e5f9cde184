"""Forward kernel: online softmax over key tiles, one program per (pair of query tiles, document, q head).

Reading q, k and v through tensor descriptors (descriptors.py) spares the registers of pointer addressing, and
pairing query tile i with tile n-1-i (tiles.paired_tiles) gives every program the same causal work: on an H100
the forward took 0.376 ms at L=2048 and 1.22 ms at L=8192 through pointers, 0.348 and 1.19 through descriptors,
0.346 and 1.16 with pairs too (bench/results/attention.md, session 4).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.attention.configs import AUTOTUNE_KEY, forward_configs
from gristmill.kernels.attention.descriptors import (
    descriptors_usable,
    head_rows,
    row_statistics,
    sized_blocks,
)
from gristmill.kernels.attention.masking import key_ranges, visible
from gristmill.kernels.attention.tiles import (
    load_head_tile,
    load_key_value_tiles,
    longest_first,
    paired_grid,
    query_tile_program,
    tile_dot,
)
from gristmill.kernels.fast_exp import LOG2E


@triton.jit
def _attention_fwd_tiles(
    acc, l_i, m_i, q_tile, k, v, doc_start, kv_head, stride_kt, stride_kh, stride_vt, stride_vh, rows, start, end,
    seqlen, window, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    MASKED: tl.constexpr, DESCRIPTORS: tl.constexpr,
):
    for n0 in range(start, end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        k_tile, v_tile = load_key_value_tiles(k, v, doc_start, n0, kv_head, stride_kt, stride_kh, stride_vt, stride_vh,
                                              seqlen, BLOCK_N, HEAD_DIM, MASKED, DESCRIPTORS)  # [BN, D] each
        scores = tile_dot(q_tile, tl.trans(k_tile))  # [BM, BN]
        if MASKED:
            # keys past the document end are hidden here too (through a descriptor they are the next document's)
            ok = visible(rows[:, None], cols[None, :], seqlen, window, CAUSAL, HAS_WINDOW)
            scores = tl.where(ok, scores * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(scores, 1))
            if HAS_WINDOW:
                # rows that have seen no visible key yet keep m = -inf; exponentiate against 0 instead
                m_base = tl.where(m_new == float("-inf"), 0.0, m_new)
            else:
                # causal or full: a row's first tile already holds a key it sees, so its max is finite
                m_base = m_new
            p = tl.math.exp2(scores - m_base[:, None])
        else:
            # scale after the row max (qk_scale > 0), so the exponent is one fused multiply-add per score
            m_new = tl.maximum(m_i, tl.max(scores, 1) * qk_scale)
            m_base = m_new
            p = tl.math.exp2(scores * qk_scale - m_base[:, None])
        alpha = tl.math.exp2(m_i - m_base)
        l_i = l_i * alpha + tl.sum(p, 1)
        acc = tile_dot(p.to(v_tile.dtype), v_tile, acc * alpha[:, None])
        m_i = m_new
    return acc, l_i, m_i


@triton.jit
def _attention_fwd_query_tile(
    q, k, v, o, lse, doc_start, stat_start, seqlen, m0, head, kv_head,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh, stride_lse_h,
    qk_scale, window,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, DESCRIPTORS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """Output and lse of queries [m0, m0 + BLOCK_M) of one q head."""
    rows = m0 + tl.arange(0, BLOCK_M)
    q_tile = load_head_tile(q, doc_start, m0, head, stride_qt, stride_qh, seqlen, BLOCK_M, HEAD_DIM, True, DESCRIPTORS)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    lo, mid_lo, mid_hi, hi = key_ranges(m0, seqlen, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    acc, l_i, m_i = _attention_fwd_tiles(
        acc, l_i, m_i, q_tile, k, v, doc_start, kv_head, stride_kt, stride_kh, stride_vt, stride_vh, rows, lo,
        mid_lo, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW, MASKED=True,
        DESCRIPTORS=DESCRIPTORS,
    )
    acc, l_i, m_i = _attention_fwd_tiles(
        acc, l_i, m_i, q_tile, k, v, doc_start, kv_head, stride_kt, stride_kh, stride_vt, stride_vh, rows, mid_lo,
        mid_hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW, MASKED=False,
        DESCRIPTORS=DESCRIPTORS,
    )
    acc, l_i, m_i = _attention_fwd_tiles(
        acc, l_i, m_i, q_tile, k, v, doc_start, kv_head, stride_kt, stride_kh, stride_vt, stride_vh, rows, mid_hi,
        hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW, MASKED=True, DESCRIPTORS=DESCRIPTORS,
    )
    o_ptrs = o + (doc_start + rows[:, None]) * stride_ot + head * stride_oh + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(o_ptrs, (acc / l_i[:, None]).to(o.dtype.element_ty), mask=rows[:, None] < seqlen)
    tl.store(lse + head * stride_lse_h + stat_start + rows, m_i + tl.math.log2(l_i), mask=rows < seqlen)


@triton.autotune(configs=forward_configs(sized_blocks({"q": "BLOCK_M", "k": "BLOCK_N", "v": "BLOCK_N"})),
                 key=AUTOTUNE_KEY + ["DESCRIPTORS"])
@triton.jit(do_not_specialize=["window", "stride_lse_h"])
def _attention_fwd_kernel(
    q, k, v, o, lse, cu_seqlens, doc_order,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot, stride_oh, stride_lse_h,
    qk_scale, window, group,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, DESCRIPTORS: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """q, k and v are tensor descriptors when DESCRIPTORS, else pointers."""
    head, doc_start, seqlen, stat_start, mirror, count = query_tile_program(cu_seqlens, doc_order, BLOCK_M)
    for step in range(count):
        _attention_fwd_query_tile(
            q, k, v, o, lse, doc_start, stat_start, seqlen, tl.where(step == 0, mirror, tl.program_id(0)) * BLOCK_M,
            head, head // group, stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_ot,
            stride_oh, stride_lse_h, qk_scale, window, HEAD_DIM, CAUSAL, HAS_WINDOW, DESCRIPTORS, BLOCK_M, BLOCK_N,
        )


def attention_forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    causal: bool,
    window: int | None,
    softmax_scale: float,
    doc_order: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns the output `[T, Hq, D]` and the log-sum-exp in fp32, base 2 (log2 of the softmax sum), one row
    per q head, each document from its descriptors.statistics_start column on. `doc_order`: the documents in
    launch order (tiles.longest_first, computed here unless the caller keeps one for the backward too)."""
    total, heads_q, head_dim = q.shape
    out = torch.empty(total, heads_q, head_dim, dtype=q.dtype, device=q.device)
    lse = row_statistics(heads_q, total, cu_seqlens.numel() - 1, q.device)
    if max_seqlen == 0:
        return out, lse

    sources = (q, k, v)
    use_descriptors = descriptors_usable(*sources)
    if use_descriptors:
        sources = tuple(head_rows(x) for x in sources)
    _attention_fwd_kernel[paired_grid(max_seqlen, "BLOCK_M", cu_seqlens.numel() - 1, heads_q)](
        *sources, out, lse, cu_seqlens, longest_first(cu_seqlens) if doc_order is None else doc_order,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        out.stride(0), out.stride(1), lse.stride(0),
        softmax_scale * LOG2E, window or 0, heads_q // k.shape[1],
        HEAD_DIM=head_dim, CAUSAL=causal, HAS_WINDOW=window is not None, DESCRIPTORS=use_descriptors,
    )
    return out, lse
