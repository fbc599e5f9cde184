"""Index arithmetic the chunked SSD kernels open with: a block of a chunk's tokens, and the head-dim (P) and
state-dim (N) lanes padded to powers of two (`lane_width` on the host picks the padded width)."""

import triton
import triton.language as tl


@triton.jit
def token_block(start, first, length, BLOCK: tl.constexpr):
    """BLOCK positions in the chunk from `first`, which of them hold a real token (the chunk has `length`), and
    their token indices from the chunk's first token `start`."""
    offs = first + tl.arange(0, BLOCK)
    mask = offs < length
    return offs, mask, start + offs


@triton.jit
def head_state_lanes(P: tl.constexpr, N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr, p_block=0):
    """Head-dim lanes of head-dim block `p_block` and all state-dim lanes, each with the mask of those inside P
    and N."""
    offs_p = p_block * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    return offs_p, offs_p < P, offs_n, offs_n < N


def lane_width(dim: int) -> int:
    """BLOCK_P or BLOCK_N for a head or state dim: a power of two, and at least 16, tl.dot's smallest operand side."""
    return max(16, triton.next_power_of_2(dim))


@triton.jit
def state_offsets(row, h, offs_p, offs_n, H: tl.constexpr, P: tl.constexpr, N: tl.constexpr):
    """[BLOCK_N, BLOCK_P] offsets of row `row` (a chunk or a document) and head h in a `[rows, H, P, N]` state
    tensor, transposed so that the tile is the right operand of a token block's [tokens, N] rows."""
    return ((row * H + h).to(tl.int64) * P + offs_p[None, :]) * N + offs_n[:, None]


@triton.jit
def load_head_state(states, row, h, offs_p, mask_p, offs_n, mask_n, H: tl.constexpr, P: tl.constexpr, N: tl.constexpr):
    """[BLOCK_N, BLOCK_P] fp32: the state of row `row` and head h (state_offsets)."""
    return tl.load(
        states + state_offsets(row, h, offs_p, offs_n, H, P, N), mask=mask_n[:, None] & mask_p[None, :], other=0.0
    ).to(tl.float32)


@triton.jit
def document_walk_start(
    states, doc_chunk_offsets, doc, h, offs_p, mask_p, offs_n, mask_n, H: tl.constexpr, P: tl.constexpr,
    N: tl.constexpr, HAS_STATE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """A document walk's first chunk, chunk count and starting carry: row `doc` of `states` when HAS_STATE (the
    initial state forwards, the final state's gradient backwards), else zero."""
    first_chunk = tl.load(doc_chunk_offsets + doc)
    num_chunks = tl.load(doc_chunk_offsets + doc + 1) - first_chunk
    if HAS_STATE:
        carry = load_head_state(states, doc, h, offs_p, mask_p, offs_n, mask_n, H, P, N)
    else:
        carry = tl.zeros([BLOCK_N, BLOCK_P], dtype=tl.float32)
    return first_chunk, num_chunks, carry


@triton.jit
def group_rows(t, mask, stride, g, offs_n, mask_n, N: tl.constexpr):
    """Offsets and mask of the [tokens, BLOCK_N] rows of group g in a `[T, G, N]` tensor (B, C or their
    gradients) whose token rows lie `stride` elements apart (a column slice of a wider tensor)."""
    return t[:, None] * stride + g * N + offs_n[None, :], mask[:, None] & mask_n[None, :]


@triton.jit
def head_rows(t, mask, stride, h, offs_p, mask_p, P: tl.constexpr):
    """Offsets and mask of the [tokens, BLOCK_P] rows of head h in a `[T, H, P]` tensor (x, dy, dx) whose token
    rows lie `stride` elements apart."""
    return t[:, None] * stride + h * P + offs_p[None, :], mask[:, None] & mask_p[None, :]


@triton.jit
def accumulate(pointers, values, mask=None):
    """Atomic add with relaxed ordering: the sums are read only by later kernels, and tl.atomic_add's default
    (acq_rel) puts a GPU-wide memory barrier and an L1 invalidation around every add, which stalls loops."""
    tl.atomic_add(pointers, values, mask=mask, sem="relaxed")
