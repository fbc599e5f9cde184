"""Which (query, key) pairs a tile may touch, in Triton; mirrors reference.visible_mask.

Each tile loop is split into three ranges: a masked head (sliding-window edge), an unmasked middle whose
tiles are fully visible, and a masked tail (diagonal and document end). Positions are relative to the
document start, so nothing here depends on the packed total length.
"""

import triton
import triton.language as tl


@triton.jit
def visible(rows, cols, seqlen, window, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr):
    """rows (queries) and cols (keys) broadcast against each other to the tile's shape.

    Rows past the document end are left visible: no kernel stores them, and the dk/dv kernel loads their q,
    dO and delta as zero. Keys past the end are hidden from every query by the causal mask already; without
    it they must be hidden explicitly (the forward would add them to the softmax sum).
    """
    if CAUSAL:
        ok = cols <= rows
        if HAS_WINDOW:
            ok = ok & (rows - cols < window)
    else:
        ok = cols < seqlen
    return ok


@triton.jit
def key_ranges(
    m0, seqlen, window,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
):
    """Key tiles for queries [m0, m0+BLOCK_M): masked [lo, mid_lo), unmasked [mid_lo, mid_hi), masked [mid_hi, hi)."""
    if CAUSAL:
        hi = tl.minimum(m0 + BLOCK_M, seqlen)
        last_full = tl.minimum(m0 - BLOCK_N + 1, seqlen - BLOCK_N)
    else:
        hi = seqlen
        last_full = seqlen - BLOCK_N
    if HAS_WINDOW:
        lo = tl.maximum(m0 - window + 1, 0)
        mid_lo = lo + tl.cdiv(tl.maximum(m0 + BLOCK_M - window - lo, 0), BLOCK_N) * BLOCK_N
        mid_lo = tl.minimum(mid_lo, hi)
    else:
        lo = 0
        mid_lo = 0
    full_tiles = tl.where(last_full >= mid_lo, (last_full - mid_lo) // BLOCK_N + 1, 0)
    return lo, mid_lo, mid_lo + full_tiles * BLOCK_N, hi


@triton.jit
def query_ranges(
    n0, seqlen, window,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr, HAS_WINDOW: tl.constexpr,
):
    """Query tiles for keys [n0, n0+BLOCK_N): masked [lo, mid_lo), unmasked [mid_lo, mid_hi), masked [mid_hi, hi)."""
    if HAS_WINDOW:
        hi = tl.minimum(seqlen, n0 + BLOCK_N - 1 + window)
        last_full = tl.minimum(seqlen - BLOCK_M, n0 + window - BLOCK_M)
    else:
        hi = seqlen
        last_full = seqlen - BLOCK_M
    if CAUSAL:
        lo = n0
        mid_lo = tl.minimum(n0 + tl.cdiv(BLOCK_N - 1, BLOCK_M) * BLOCK_M, hi)
    else:
        lo = 0
        mid_lo = 0
    full_tiles = tl.where(last_full >= mid_lo, (last_full - mid_lo) // BLOCK_M + 1, 0)
    return lo, mid_lo, mid_lo + full_tiles * BLOCK_M, hi
