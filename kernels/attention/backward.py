"""Backward kernels: dq per query tile (which also writes delta = rowsum(dO * O)), then dk/dv per key tile; no atomics.

Both kernels run one program per pair of mirrored tiles (tiles.paired_tiles), so every program of a causal
launch does the same work. The dq kernel reads k and v through tensor descriptors where it can, as the
forward does.

The dq kernel reads dO anyway, so it computes delta on the way and stores it for the dk/dv kernel, launched
after it on the same stream. dk and dv of a kv head sum over its whole q-head group inside one program (flat
loops over group member and query tile; loops per member spilled registers at D=128), so grouped-query
attention needs no reduction pass. Probabilities are recomputed from the saved base-2 log-sum-exp.

The dk/dv kernel streams q, dO, lse and delta tiles. Where it can (descriptors.py) it reads them through
tensor descriptors, and then (at head dim 128) masks every query tile in one loop: on an H100 the whole
backward at L=8192 took 3.54 ms that way against 3.90 ms for the fastest pointer tile (bench/results/attention.md,
session 3). At head dim 64 the split loops stay faster through descriptors too (session 6).
Through pointers separate loops stay faster: only the query tiles at the diagonal, the window edge and the
document end take the mask and bounds checks.

With ROTATE (rotary_qkv_attention) q and k were rotated by RoPE before attention: each program rotates its
finished dq or dk tile back once, after its loops, so the gradients leave already unrotated. With ROW_SCALE
(a qkv projection with its input RMSNorm folded in, projected_rotary_qkv.py) each program also scales its
finished tile by the rows' rstd and stores the rows' share of rstd's gradient (`_row_dot`).
"""

import torch
import triton
import triton.language as tl

from gristmill.kernels.attention.configs import AUTOTUNE_KEY, key_grad_configs, query_grad_configs
from gristmill.kernels.attention.descriptors import (
    descriptors_usable,
    head_rows,
    row_statistics,
    sized_blocks,
    statistic_rows,
    statistics_start,
)
from gristmill.kernels.attention.masking import key_ranges, query_ranges, visible
from gristmill.kernels.attention.tiles import (
    load_head_tile,
    load_key_value_tiles,
    load_rows,
    longest_first,
    paired_grid,
    paired_tiles,
    query_tile_program,
    scheduled_document,
    tile_dot,
)
from gristmill.kernels.fast_exp import LOG2E
from gristmill.kernels.fused.rope.tile_rotation import unrotate_rows


@triton.jit
def load_statistics(base, rows, seqlen, MASKED: tl.constexpr):
    """lse or delta of `rows`; zero past the document end when MASKED."""
    if MASKED:
        values = tl.load(base + rows, mask=rows < seqlen, other=0.0)
    else:
        values = tl.load(base + rows)
    return values


@triton.jit
def _row_dot(grad, values):
    """Each row's <grad, values> in float32: with ROW_SCALE, for a projection whose output rows the forward scaled by
    the norm's rstd (in the GEMM's epilogue), the kernels store this dot of each gradient and value as attention saw
    them (after RoPE, whose rotation keeps it), the row's share of the rstd gradient, and hand back the gradients
    times rstd, those of the unscaled projection. rstd is read as the tile starts, so its latency hides behind the
    loops, and the dots take the tiles already loaded (reading them again at the end was no faster on an H100,
    bench/results/attention.md session 18)."""
    return tl.sum(grad * values.to(tl.float32), 1)


@triton.jit
def _attention_bwd_key_tiles(
    dk_acc, dv_acc, k_tile, v_tile, cols, q, do, lse, delta, doc_start, stat_start, first_head, stride_qt,
    stride_qh, stride_dot, stride_doh, stride_lse_h, start, end, group, seqlen, window, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    MASKED: tl.constexpr, DESCRIPTORS: tl.constexpr,
):
    """Query tiles [start, end) of every q head of the group, in one flat loop (one loop per head spilled); the head
    and the tile's first row are carried from step to step rather than divided out of the step."""
    head = first_head
    first_row = start
    for _ in range(0, group * tl.cdiv(end - start, BLOCK_M)):
        rows = first_row + tl.arange(0, BLOCK_M)
        q_tile = load_head_tile(q, doc_start, first_row, head, stride_qt, stride_qh, seqlen, BLOCK_M, HEAD_DIM, MASKED,
                                DESCRIPTORS)  # [BM, D]
        do_tile = load_head_tile(do, doc_start, first_row, head, stride_dot, stride_doh, seqlen, BLOCK_M, HEAD_DIM,
                                 MASKED, DESCRIPTORS)  # [BM, D]
        if DESCRIPTORS:
            lse_row = lse.load([head, stat_start + first_row]).reshape([BLOCK_M])
            delta_row = delta.load([head, stat_start + first_row]).reshape([BLOCK_M])
        else:
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
        first_row += BLOCK_M
        head_done = first_row >= end
        head = tl.where(head_done, head + 1, head)
        first_row = tl.where(head_done, start, first_row)
    return dk_acc, dv_acc


@triton.jit
def _attention_bwd_key_tile(
    q, k, v, do, lse, delta, dk, dv, doc_start, stat_start, seqlen, n0, kv_head,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dkt, stride_dkh, stride_lse_h, cos, sin, rstd, row_dots, stride_dots,
    softmax_scale, qk_scale, window, group,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, DESCRIPTORS: tl.constexpr,
    ROTATE: tl.constexpr, ROW_SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dk and dv of keys [n0, n0 + BLOCK_N) of one kv head, summed over its q-head group; dk rotated back by RoPE
    when ROTATE (k was rotated, v never is); with ROW_SCALE see `_row_dot`."""
    cols = n0 + tl.arange(0, BLOCK_N)
    if ROW_SCALE:
        col_rstd = tl.load(rstd + doc_start + cols, mask=cols < seqlen, other=0.0)
    k_tile = load_rows(k + doc_start * stride_kt + kv_head * stride_kh, stride_kt, cols, seqlen, HEAD_DIM, True)
    v_tile = load_rows(v + doc_start * stride_vt + kv_head * stride_vh, stride_vt, cols, seqlen, HEAD_DIM, True)
    first_head = kv_head * group
    dk_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    dv_acc = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
    lo, mid_lo, mid_hi, hi = query_ranges(n0, seqlen, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    if DESCRIPTORS and HEAD_DIM > 64:
        # one loop, every tile masked: at D=128 with cheap loads the separate loops cost more than the mask (and
        # spilled); at D=64 the separate loops are ~4% faster (bench/results/attention.md, session 6)
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
    dk_tile = dk_acc * softmax_scale
    dv_tile = dv_acc
    if ROW_SCALE:
        tl.store(row_dots + kv_head * stride_dots + doc_start + cols,
                 _row_dot(dk_tile, k_tile) + _row_dot(dv_tile, v_tile), mask=cols < seqlen)
        dk_tile *= col_rstd[:, None]
        dv_tile *= col_rstd[:, None]
    if ROTATE:
        dk_tile = unrotate_rows(dk_tile, cos, sin, doc_start + cols, cols < seqlen, BLOCK_N, HEAD_DIM)
    out_offsets = (doc_start + cols[:, None]) * stride_dkt + kv_head * stride_dkh + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(dk + out_offsets, dk_tile.to(dk.dtype.element_ty), mask=cols[:, None] < seqlen)
    tl.store(dv + out_offsets, dv_tile.to(dv.dtype.element_ty), mask=cols[:, None] < seqlen)


@triton.autotune(
    configs=key_grad_configs(sized_blocks({"q": "BLOCK_M", "do": "BLOCK_M"}, {"lse": "BLOCK_M", "delta": "BLOCK_M"})),
    key=AUTOTUNE_KEY + ["DESCRIPTORS", "ROTATE", "ROW_SCALE"],
)
@triton.jit(do_not_specialize=["window", "stride_lse_h"])
def _attention_bwd_dkdv_kernel(
    q, k, v, do, lse, delta, dk, dv, cu_seqlens, doc_order,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_dkt, stride_dkh, stride_lse_h, cos, sin, rstd, row_dots, stride_dots,
    softmax_scale, qk_scale, window, group,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, DESCRIPTORS: tl.constexpr,
    ROTATE: tl.constexpr, ROW_SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program per (pair of key tiles, kv head, document); q, do, lse and delta are tensor descriptors when
    DESCRIPTORS, else pointers."""
    kv_head, doc, doc_start, seqlen = scheduled_document(cu_seqlens, doc_order)
    stat_start = tl.multiple_of(statistics_start(doc_start, doc).to(tl.int32), 4)
    mirror, count = paired_tiles(tl.program_id(0), seqlen, BLOCK_N)
    for step in range(count):
        _attention_bwd_key_tile(
            q, k, v, do, lse, delta, dk, dv, doc_start, stat_start, seqlen,
            tl.where(step == 0, mirror, tl.program_id(0)) * BLOCK_N, kv_head,
            stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
            stride_dkt, stride_dkh, stride_lse_h, cos, sin, rstd, row_dots, stride_dots, softmax_scale, qk_scale,
            window, group, HEAD_DIM, CAUSAL, HAS_WINDOW, DESCRIPTORS, ROTATE, ROW_SCALE, BLOCK_M, BLOCK_N,
        )


@triton.jit
def _attention_bwd_query_tiles(
    dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k, v, doc_start, kv_head, stride_kt, stride_kh, stride_vt,
    stride_vh, start, end, seqlen, window, qk_scale,
    HEAD_DIM: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
    MASKED: tl.constexpr, DESCRIPTORS: tl.constexpr,
):
    for n0 in range(start, end, BLOCK_N):
        cols = n0 + tl.arange(0, BLOCK_N)
        k_tile, v_tile = load_key_value_tiles(k, v, doc_start, n0, kv_head, stride_kt, stride_kh, stride_vt, stride_vh,
                                              seqlen, BLOCK_N, HEAD_DIM, MASKED, DESCRIPTORS)  # [BN, D] each
        qk = tile_dot(q_tile, tl.trans(k_tile))  # [BM, BN]
        dp = tile_dot(do_tile, tl.trans(v_tile))  # [BM, BN]
        p = tl.math.exp2(qk * qk_scale - lse_row[:, None])
        if MASKED:
            # keys past the document end are hidden here too (through a descriptor they are the next document's)
            p = tl.where(visible(rows[:, None], cols[None, :], seqlen, window, CAUSAL, HAS_WINDOW), p, 0.0)
        ds = p * (dp - delta_row[:, None])
        dq_acc = tile_dot(ds.to(k_tile.dtype), k_tile, dq_acc)
    return dq_acc


@triton.jit
def _attention_bwd_query_tile(
    q, k, v, o, do, lse, delta, dq, doc_start, stat_start, seqlen, m0, head, kv_head,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_ot, stride_oh, stride_dqt, stride_dqh, stride_lse_h, cos, sin, rstd, row_dots, stride_dots,
    softmax_scale, qk_scale, window,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, DESCRIPTORS: tl.constexpr,
    ROTATE: tl.constexpr, ROW_SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """dq and delta of queries [m0, m0 + BLOCK_M) of one q head; dq rotated back by RoPE when ROTATE; with
    ROW_SCALE see `_row_dot`."""
    rows = m0 + tl.arange(0, BLOCK_M)
    if ROW_SCALE:
        row_rstd = tl.load(rstd + doc_start + rows, mask=rows < seqlen, other=0.0)
    q_tile = load_rows(q + doc_start * stride_qt + head * stride_qh, stride_qt, rows, seqlen, HEAD_DIM, True)
    do_tile = load_rows(do + doc_start * stride_dot + head * stride_doh, stride_dot, rows, seqlen, HEAD_DIM, True)
    o_tile = load_rows(o + doc_start * stride_ot + head * stride_oh, stride_ot, rows, seqlen, HEAD_DIM, True)
    delta_row = tl.sum(o_tile.to(tl.float32) * do_tile.to(tl.float32), 1)
    tl.store(delta + head * stride_lse_h + stat_start + rows, delta_row, mask=rows < seqlen)
    lse_row = tl.load(lse + head * stride_lse_h + stat_start + rows, mask=rows < seqlen, other=0.0)
    dq_acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
    lo, mid_lo, mid_hi, hi = key_ranges(m0, seqlen, window, BLOCK_M, BLOCK_N, CAUSAL, HAS_WINDOW)
    dq_acc = _attention_bwd_query_tiles(
        dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k, v, doc_start, kv_head, stride_kt, stride_kh,
        stride_vt, stride_vh, lo, mid_lo, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW,
        MASKED=True, DESCRIPTORS=DESCRIPTORS,
    )
    dq_acc = _attention_bwd_query_tiles(
        dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k, v, doc_start, kv_head, stride_kt, stride_kh,
        stride_vt, stride_vh, mid_lo, mid_hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW,
        MASKED=False, DESCRIPTORS=DESCRIPTORS,
    )
    dq_acc = _attention_bwd_query_tiles(
        dq_acc, q_tile, do_tile, lse_row, delta_row, rows, k, v, doc_start, kv_head, stride_kt, stride_kh,
        stride_vt, stride_vh, mid_hi, hi, seqlen, window, qk_scale, HEAD_DIM, BLOCK_N, CAUSAL, HAS_WINDOW,
        MASKED=True, DESCRIPTORS=DESCRIPTORS,
    )
    dq_tile = dq_acc * softmax_scale
    if ROW_SCALE:
        tl.store(row_dots + head * stride_dots + doc_start + rows, _row_dot(dq_tile, q_tile), mask=rows < seqlen)
        dq_tile *= row_rstd[:, None]
    if ROTATE:
        dq_tile = unrotate_rows(dq_tile, cos, sin, doc_start + rows, rows < seqlen, BLOCK_M, HEAD_DIM)
    dq_ptrs = dq + (doc_start + rows[:, None]) * stride_dqt + head * stride_dqh + tl.arange(0, HEAD_DIM)[None, :]
    tl.store(dq_ptrs, dq_tile.to(dq.dtype.element_ty), mask=rows[:, None] < seqlen)


@triton.autotune(configs=query_grad_configs(sized_blocks({"k": "BLOCK_N", "v": "BLOCK_N"})),
                 key=AUTOTUNE_KEY + ["DESCRIPTORS", "ROTATE", "ROW_SCALE"])
@triton.jit(do_not_specialize=["window", "stride_lse_h"])
def _attention_bwd_dq_kernel(
    q, k, v, o, do, lse, delta, dq, cu_seqlens, doc_order,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
    stride_ot, stride_oh, stride_dqt, stride_dqh, stride_lse_h, cos, sin, rstd, row_dots, stride_dots,
    softmax_scale, qk_scale, window, group,
    HEAD_DIM: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr, DESCRIPTORS: tl.constexpr,
    ROTATE: tl.constexpr, ROW_SCALE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One program per (pair of query tiles, q head, document); k and v are tensor descriptors when
    DESCRIPTORS, else pointers."""
    head, doc_start, seqlen, stat_start, mirror, count = query_tile_program(cu_seqlens, doc_order, BLOCK_M)
    for step in range(count):
        _attention_bwd_query_tile(
            q, k, v, o, do, lse, delta, dq, doc_start, stat_start, seqlen,
            tl.where(step == 0, mirror, tl.program_id(0)) * BLOCK_M, head, head // group,
            stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_dot, stride_doh,
            stride_ot, stride_oh, stride_dqt, stride_dqh, stride_lse_h, cos, sin, rstd, row_dots, stride_dots,
            softmax_scale, qk_scale, window, HEAD_DIM, CAUSAL, HAS_WINDOW, DESCRIPTORS, ROTATE, ROW_SCALE, BLOCK_M,
            BLOCK_N,
        )


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
    grads: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    doc_order: torch.Tensor | None = None,
    rope: tuple[torch.Tensor, torch.Tensor] | None = None,
    row_scale: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients (dq, dk, dv) in the inputs' dtype, given dO and the forward's output and base-2 log-sum-exp.

    `grads` are buffers to write them into instead (views of one qkv-shaped gradient, say): shaped like q, k, v
    with a contiguous last dim, dk and dv with equal strides (one kernel stores both). `doc_order` as for
    attention_forward. `rope`: the contiguous float32 cos and sin `[T, D/2]` (rope_cos_sin) that rotated q and k;
    dq and dk then come out rotated back, the gradients of q and k before RoPE, with no pass of their own.
    `row_scale`: (rstd `[T]`, dots `[Hq + Hkv, T]`), both contiguous float32, for q, k and v whose projection's
    rows were scaled by rstd: the gradients come out times rstd (those of the unscaled projection) and each head's
    row of `dots` (q heads, then kv heads) receives its <dq, q> (<dk, k> + <dv, v> for a kv head) per token."""
    total, heads_q, head_dim = q.shape
    heads_kv = k.shape[1]
    if rope is not None and any(t.shape != (total, head_dim // 2) or not t.is_contiguous() or t.dtype != torch.float32
                                for t in rope):
        tables = [(tuple(t.shape), t.dtype) for t in rope]
        raise ValueError(f"rope tables {tables} must be contiguous float32 [{total}, {head_dim // 2}]")
    if grads is None:
        grads = tuple(torch.empty(x.shape, dtype=x.dtype, device=x.device) for x in (q, k, v))
    dq, dk, dv = grads
    if dk.stride() != dv.stride() or any(g.stride(-1) != 1 for g in grads):
        raise ValueError(f"dk {dk.stride()} and dv {dv.stride()} need equal strides and a contiguous last dim")
    num_docs = cu_seqlens.numel() - 1
    if max_seqlen == 0:
        return dq, dk, dv
    delta = row_statistics(heads_q, total, num_docs, q.device)
    if doc_order is None:
        doc_order = longest_first(cu_seqlens)
    flags = dict(HEAD_DIM=head_dim, CAUSAL=causal, HAS_WINDOW=window is not None, ROTATE=rope is not None,
                 ROW_SCALE=row_scale is not None)
    cos, sin = rope or (None, None)
    rstd, row_dots = row_scale or (None, None)
    if row_scale is not None and (rstd.shape != (total,) or row_dots.shape != (heads_q + heads_kv, total)
                                  or any(t.dtype != torch.float32 or not t.is_contiguous() for t in row_scale)):
        shapes = [(tuple(t.shape), t.dtype) for t in row_scale]
        raise ValueError(f"row_scale {shapes} must be contiguous float32 [{total}] and [{heads_q + heads_kv}, {total}]")
    dq_dots, kv_dots = (None, None) if row_dots is None else (row_dots, row_dots[heads_q:])
    scalars = (softmax_scale, softmax_scale * LOG2E, window or 0, heads_q // heads_kv)
    input_strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                     do.stride(0), do.stride(1))

    key_sources = (k, v)
    dq_descriptors = descriptors_usable(*key_sources)
    if dq_descriptors:
        key_sources = tuple(head_rows(x) for x in key_sources)
    _attention_bwd_dq_kernel[paired_grid(max_seqlen, "BLOCK_M", num_docs, heads_q)](
        q, *key_sources, out, do, lse, delta, dq, cu_seqlens, doc_order, *input_strides, out.stride(0), out.stride(1),
        dq.stride(0), dq.stride(1), lse.stride(0), cos, sin, rstd, dq_dots, total, *scalars, **flags,
        DESCRIPTORS=dq_descriptors,
    )
    query_sources = (q, do, lse, delta)
    use_descriptors = descriptors_usable(*query_sources)
    if use_descriptors:
        query_sources = (head_rows(q), head_rows(do), statistic_rows(lse), statistic_rows(delta))
    q_src, do_src, lse_src, delta_src = query_sources
    _attention_bwd_dkdv_kernel[paired_grid(max_seqlen, "BLOCK_N", num_docs, heads_kv)](
        q_src, k, v, do_src, lse_src, delta_src, dk, dv, cu_seqlens, doc_order, *input_strides,
        dk.stride(0), dk.stride(1), lse.stride(0), cos, sin, rstd, kv_dots, total, *scalars, **flags,
        DESCRIPTORS=use_descriptors,
    )
    return dq, dk, dv
