"""Autotune candidates for the SSD kernels, keyed on head dims and chunk size only, never on token count.

Under TRITON_INTERPRET=1 the CPU interpreter would time every candidate, so only the first is offered.
"""

import os

import triton


def candidates(*options: tuple[int, int]) -> list[triton.Config]:
    """`options` are (num_warps, num_stages) pairs, the first being the safe default."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        options = options[:1]
    return [triton.Config({}, num_warps=warps, num_stages=stages) for warps, stages in options]
