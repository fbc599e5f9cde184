"""Autotune candidates for the SSD kernels, keyed on head dims and chunk size only, never on token count.

Under TRITON_INTERPRET=1 the CPU interpreter would time every candidate, so it gets one config whose
blocks of 16 tokens split even the tests' small chunks into several blocks.
"""

from collections.abc import Callable

import triton

from gristmill.kernels.interpreter import interpreting
from gristmill.kernels.ssd.blocks import lane_width

INTERPRETER_BLOCK = 16


def candidates(*options: tuple[dict[str, int], int, int]) -> list[triton.Config]:
    """`options` are (block sizes, num_warps, num_stages) for the GPU."""
    if interpreting():
        meta = {name: INTERPRETER_BLOCK for name in options[0][0]}
        return [triton.Config(meta, num_warps=4, num_stages=1)]
    return [triton.Config(dict(meta), num_warps=warps, num_stages=stages) for meta, warps, stages in options]


def head_dim_blocks_within_lanes(configs: list[triton.Config], named_args: dict, **kwargs) -> list[triton.Config]:
    """A head-dim block wider than the padded head dim would only compute masked lanes: narrow it to them."""
    lanes = lane_width(kwargs.get("P", named_args.get("P")))
    return [
        triton.Config(
            {**config.kwargs, "BLOCK_P": min(config.kwargs["BLOCK_P"], lanes)},
            num_warps=config.num_warps,
            num_stages=config.num_stages,
        )
        for config in configs
    ]


def document_walk_grid(P: int, H: int, docs: int) -> Callable[[dict], tuple[int, int, int]]:
    """The launch grid of a document walk: (head-dim block, head, document) programs for the tuned BLOCK_P."""
    return lambda meta: (triton.cdiv(P, meta["BLOCK_P"]), H, docs)
