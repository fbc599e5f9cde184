"""Tile primitives shared by the kernels: a document's span, which tiles a program takes, row-tile loads, tl.dot.

tile_dot works around Triton's CPU interpreter, which (seen in triton 3.9) multiplies the raw uint16 bit
patterns of bfloat16 operands: there the operands are widened to fp32 first. bf16 and fp16 products are exact
in fp32, so results match a GPU's fp32-accumulating tensor-core dot. Compiled kernels take the plain path.
"""

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from gristmill.kernels.attention.descriptors import statistics_start
from gristmill.kernels.interpreter import interpreting

WIDEN_OPERANDS = tl.constexpr(interpreting())


@triton.jit
def document_span(cu_seqlens, doc):
    """First token (int64, for pointer offsets) and length of document `doc`."""
    start = tl.load(cu_seqlens + doc).to(tl.int64)
    seqlen = (tl.load(cu_seqlens + doc + 1) - start).to(tl.int32)
    return start, seqlen


@triton.jit
def paired_tiles(program, seqlen, BLOCK: tl.constexpr):
    """A program takes tiles `program` and `mirror` = tiles-1-program of a document; returns mirror and how many
    of the two exist (2; 1 where they meet; 0 past the middle). Under a causal mask tile i of n costs about i
    (queries) or n-i (keys) steps, so every pair costs the same: no long tile is left for the end of the launch."""
    mirror = tl.cdiv(seqlen, BLOCK) - 1 - program
    return mirror, tl.minimum(tl.maximum(mirror - program + 1, 0), 2)


@triton.jit
def scheduled_document(cu_seqlens, doc_order):
    """This program's head (grid axis 1), document (axis 2, through `doc_order`), its first token and length.
    With documents longest first and heads inside them, a launch starts with the longest documents' programs of
    every head and ends on short ones, instead of leaving a long document's programs running alone at its end."""
    doc = tl.load(doc_order + tl.program_id(2))
    doc_start, seqlen = document_span(cu_seqlens, doc)
    return tl.program_id(1), doc, doc_start, seqlen


@triton.jit
def query_tile_program(cu_seqlens, doc_order, BLOCK_M: tl.constexpr):
    """What a (query-tile pair, q head, document) program of the forward and dq kernels works on: its q head, the
    document's first token, length and statistics offset, and its pair of query tiles (paired_tiles)."""
    head, doc, doc_start, seqlen = scheduled_document(cu_seqlens, doc_order)
    stat_start = statistics_start(doc_start, doc)
    mirror, count = paired_tiles(tl.program_id(0), seqlen, BLOCK_M)
    return head, doc_start, seqlen, stat_start, mirror, count


def longest_first(cu_seqlens: torch.Tensor) -> torch.Tensor:
    """Document indices by decreasing length (int32), the order `scheduled_document` launches them in. Under a
    causal mask a document's tile-pair programs each cost about its tile count, so one long document launched
    last would run alone after the rest finished (longest-processing-time-first scheduling)."""
    return torch.argsort(cu_seqlens[1:] - cu_seqlens[:-1], descending=True).to(torch.int32)


def paired_grid(max_seqlen: int, block: str, docs: int, heads: int) -> Callable[[dict], tuple[int, int, int]]:
    """Launch grid for paired_tiles: (tile pairs of the longest document, heads, documents)."""

    def size(meta: dict) -> tuple[int, int, int]:
        return triton.cdiv(triton.cdiv(max_seqlen, meta[block]), 2), heads, docs

    return size


@triton.jit
def load_rows(base, stride, rows, seqlen, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr):
    """[len(rows), HEAD_DIM] tile of a document's rows; rows past its end read as zero when MASKED."""
    ptrs = base + rows[:, None] * stride + tl.arange(0, HEAD_DIM)[None, :]
    if MASKED:
        tile = tl.load(ptrs, mask=rows[:, None] < seqlen, other=0.0)
    else:
        tile = tl.load(ptrs)
    return tile


@triton.jit
def load_head_tile(
    src, doc_start, first_row, head, stride_t, stride_h, seqlen,
    BLOCK: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr, DESCRIPTORS: tl.constexpr,
):
    """[BLOCK, HEAD_DIM] of one head, from a document's row `first_row` on. Through a `[T, H*D]` descriptor
    (descriptors.head_rows) rows past the document end hold the next document's values, which the caller
    masks; through pointers they read as zero when MASKED."""
    if DESCRIPTORS:
        tile = src.load([(doc_start + first_row).to(tl.int32), head * HEAD_DIM])
    else:
        rows = first_row + tl.arange(0, BLOCK)
        tile = load_rows(src + doc_start * stride_t + head * stride_h, stride_t, rows, seqlen, HEAD_DIM, MASKED)
    return tile


@triton.jit
def load_key_value_tiles(
    k, v, doc_start, n0, kv_head, stride_kt, stride_kh, stride_vt, stride_vh, seqlen,
    BLOCK_N: tl.constexpr, HEAD_DIM: tl.constexpr, MASKED: tl.constexpr, DESCRIPTORS: tl.constexpr,
):
    """The k and v tiles of keys [n0, n0 + BLOCK_N), as load_head_tile reads them."""
    k_tile = load_head_tile(k, doc_start, n0, kv_head, stride_kt, stride_kh, seqlen, BLOCK_N, HEAD_DIM, MASKED,
                            DESCRIPTORS)
    v_tile = load_head_tile(v, doc_start, n0, kv_head, stride_vt, stride_vh, seqlen, BLOCK_N, HEAD_DIM, MASKED,
                            DESCRIPTORS)
    return k_tile, v_tile


@triton.jit
def tile_dot(a, b, acc=None):
    """acc + a @ b in fp32; passing the accumulator lets the tensor cores add in place."""
    if WIDEN_OPERANDS:
        result = tl.dot(a.to(tl.float32), b.to(tl.float32), acc)
    else:
        result = tl.dot(a, b, acc)
    return result
