"""RoPE's backward on a tile another kernel holds in registers, so a gradient leaves that kernel unrotated.

The attention backward computes dq and dk against the rotated q and k; rotating each finished tile back just
before its store saves a separate pass that would read and write all of dq and dk again.
"""

import triton
import triton.language as tl


@triton.jit
def unrotate_rows(tile, cos, sin, tokens, valid, ROWS: tl.constexpr, HEAD_DIM: tl.constexpr):
    """`tile` [ROWS, HEAD_DIM] (fp32) rotated by minus the angle of each row's token: pairs (2i, 2i + 1)
    turn by -a, with cos a and sin a read from the `[T, HEAD_DIM/2]` float32 tables at row `tokens` (int64),
    rows where `valid` is false left as they are."""
    half_cols = tl.arange(0, HEAD_DIM // 2)[None, :]
    table_offsets = tokens[:, None] * (HEAD_DIM // 2) + half_cols
    cos_a = tl.load(cos + table_offsets, mask=valid[:, None], other=1.0)  # [ROWS, D/2]
    sin_a = tl.load(sin + table_offsets, mask=valid[:, None], other=0.0)
    first, second = tl.split(tl.reshape(tile, [ROWS, HEAD_DIM // 2, 2]))  # [ROWS, D/2] each
    return tl.reshape(tl.join(first * cos_a + second * sin_a, second * cos_a - first * sin_a), [ROWS, HEAD_DIM])
