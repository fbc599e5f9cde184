"""Autotune candidates per kernel: Hopper-sized tiles on a GPU, one small tile set in the interpreter.

Keys are head dim and the masking flags only (never a length), so packed batches of changing total length
reuse the tuned choice. The GPU lists hold the fastest tiles of per-config sweeps on an H100 (D=128, causal,
2k and 8k; D=64 with 16/4 heads on packed rows of 4096, the trainer's shape; bench/results/attention.md), plus
one small-shared-memory tile per kernel; configs that do not fit a smaller GPU fail to compile and the
autotuner skips them. Every head dim tunes over the same list: at D=64 no larger tile won (the sweep tried
BLOCK_N 128 in all three kernels), so no per-head-dim lists are needed.
"""

from collections.abc import Callable

import triton

from gristmill.kernels.interpreter import interpreting

AUTOTUNE_KEY = ["HEAD_DIM", "CAUSAL", "HAS_WINDOW"]

THREE_PROGRAMS_PER_SM = 168
"""Registers per thread that let three 4-warp programs share an SM (65536 / 384, rounded down to ptxas's step of 8).
The dq kernel's 64x64 w4 tile needs three: its RoPE epilogue (rotary_qkv) took it from 161 to 170 registers, two
programs per SM, and the rotating dq kernel to 0.565 ms against 0.428 capped (plain 0.409; H100, D=64, 16/4 heads,
8 rows of 4096, bench/results/attention.md session 7); capped, ptxas (triton 3.6, sm_90) fits it in 161 with no
spill, the plain kernel in 158."""


def _configs(
    tiles: list[tuple[int, int, int, int]], pre_hook: Callable[[dict], None], four_warp_registers: int | None = None
) -> list[triton.Config]:
    """`four_warp_registers` caps the registers of the 4-warp tiles (ptx .maxnreg); the others keep ptxas's choice."""
    return [
        triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=warps, num_stages=stages, pre_hook=pre_hook,
                      maxnreg=four_warp_registers if warps == 4 else None)
        for bm, bn, warps, stages in tiles
    ]


def forward_configs(pre_hook: Callable[[dict], None]) -> list[triton.Config]:
    """BLOCK_M queries per tile, BLOCK_N keys per step; `pre_hook` sizes the q, k, v descriptors to the tile."""
    if interpreting():
        return _configs([(32, 16, 4, 1)], pre_hook)
    return _configs([(128, 64, 8, 3), (128, 64, 8, 4), (64, 64, 4, 2)], pre_hook)


def key_grad_configs(pre_hook: Callable[[dict], None]) -> list[triton.Config]:
    """BLOCK_N keys per tile (dk, dv accumulate in registers), BLOCK_M queries per step; `pre_hook` sizes
    the query-tile descriptors to BLOCK_M. 64x64 w4 s2 was the fastest through descriptors, 64x128 w8 s2
    through pointers (H100, D=128, 2k and 8k); 64x64 w4 s3 at D=64 with GQA on packed rows (whole backward
    1.11 ms against 1.21 for the pick without it)."""
    if interpreting():
        return _configs([(16, 32, 4, 1)], pre_hook)
    return _configs([(64, 64, 4, 2), (32, 64, 4, 3), (64, 64, 4, 3), (64, 128, 8, 2)], pre_hook)


def query_grad_configs(pre_hook: Callable[[dict], None]) -> list[triton.Config]:
    """BLOCK_M queries per tile (dq accumulates in registers), BLOCK_N keys per step; `pre_hook` sizes the k, v
    descriptors to the tile. The 4-warp tiles are held to three programs per SM; their third stage took the dq
    kernel from 0.413 to 0.367 ms (0.431 to 0.382 with its RoPE epilogue; H100, D=64, 16/4 heads, 8 packed rows of
    4096, bench/results/attention.md session 23)."""
    if interpreting():
        return _configs([(32, 16, 4, 1)], pre_hook)
    return _configs([(128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3)], pre_hook,
                    four_warp_registers=THREE_PROGRAMS_PER_SM)
