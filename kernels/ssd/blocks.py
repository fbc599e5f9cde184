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
def head_state_lanes(P: tl.constexpr, N: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_N: tl.constexpr):
    """Head-dim and state-dim lanes, each with the mask of those inside P and N."""
    offs_p = tl.arange(0, BLOCK_P)
    offs_n = tl.arange(0, BLOCK_N)
    return offs_p, offs_p < P, offs_n, offs_n < N


def lane_width(dim: int) -> int:
    """BLOCK_P or BLOCK_N for a head or state dim: a power of two, and at least 16, tl.dot's smallest operand side."""
    return max(16, triton.next_power_of_2(dim))
