"""Tensor descriptors (TMA on Hopper) for the tiles the kernels stream: k and v rows in the forward and the dq
kernel (and the forward's q), q, dO, lse and delta rows in the dk/dv kernel.

Through pointers every thread computes and predicates its own addresses (and in the dk/dv kernel lse and
delta, needed along the columns of the [keys, queries] tile, take one 4-byte load per column and thread). A
descriptor load is one bulk copy per tile; on an H100 the descriptor kernels were the faster ones
(kernels/attention/README.md). Descriptors need triton >= 3.4 (`triton.tools.tensor_descriptor`), a Hopper or
newer GPU (or the interpreter), and 16-byte aligned rows; otherwise the kernels read through pointers.

A descriptor only knows the whole packed tensor, so rows past a document's end read the next document's
values instead of zeros: the kernel masks those rows itself. A descriptor block must also start at a multiple of 16
bytes along its innermost dimension, which a document's first token in a `[H, T]` fp32 row rarely does; so
lse and delta keep each document's values from a 4-element boundary on (`row_statistics`, `statistics_start`).
"""

from collections.abc import Callable

import torch
import triton
import triton.language as tl  # noqa: F401  (triton.jit needs it visible in the module)

from gristmill.kernels.interpreter import interpreting

try:
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # triton < 3.4
    TensorDescriptor = None

ROW_ALIGN_BYTES = 16


def row_statistics(heads: int, total: int, docs: int, device: torch.device) -> torch.Tensor:
    """Zeroed fp32 `[heads, >= total + 4 * docs]` for per-token lse or delta, laid out by statistics_start."""
    per_row = ROW_ALIGN_BYTES // 4
    columns = (total + per_row - 1) // per_row * per_row + per_row * (docs + 1)
    return torch.zeros(heads, columns, dtype=torch.float32, device=device)


@triton.jit
def statistics_start(doc_start, doc):
    """Column of a document's first token in row_statistics: 16-byte aligned, past the previous document's end."""
    return (doc_start // 4 + doc) * 4


def _aligned(x: torch.Tensor) -> bool:
    return x.data_ptr() % ROW_ALIGN_BYTES == 0 and all(
        stride * x.element_size() % ROW_ALIGN_BYTES == 0 for stride in x.stride()[:-1]
    )


def descriptors_usable(*tensors: torch.Tensor) -> bool:
    """True when this triton and device can read these `[T, H, D]` / `[H, T]` tensors through descriptors."""
    if TensorDescriptor is None:
        return False
    if not interpreting():
        if not torch.cuda.is_available() or torch.cuda.get_device_capability(tensors[0].device)[0] < 9:
            return False
    heads_contiguous = all(x.dim() != 3 or x.stride(1) == x.shape[2] for x in tensors)
    return heads_contiguous and all(x.numel() > 0 and _aligned(x) for x in tensors)


def head_rows(x: torch.Tensor) -> "TensorDescriptor":
    """`[T, H, D]` as a `[T, H*D]` descriptor; its block shape is set per autotune config (sized_blocks)."""
    total, heads, head_dim = x.shape
    return TensorDescriptor(x, [total, heads * head_dim], [x.stride(0), 1], [16, head_dim])


def statistic_rows(x: torch.Tensor) -> "TensorDescriptor":
    """`[H, T]` row statistics as a descriptor of `[1, BLOCK_M]` blocks."""
    return TensorDescriptor(x, list(x.shape), [x.stride(0), 1], [1, 16])


def sized_blocks(
    head_tiles: dict[str, str], statistic_tiles: dict[str, str] | None = None
) -> Callable[[dict], None]:
    """Autotune pre-hook sizing each named descriptor's block to the config's tile: `{"q": "BLOCK_M"}` gives q
    `[BLOCK_M, HEAD_DIM]` blocks, a statistic `[1, BLOCK_M]` ones. Arguments passed as pointers stay untouched."""

    def set_blocks(nargs: dict) -> None:
        for name, block in head_tiles.items():
            if TensorDescriptor is not None and isinstance(nargs[name], TensorDescriptor):
                nargs[name].block_shape = [nargs[block], nargs["HEAD_DIM"]]
        for name, block in (statistic_tiles or {}).items():
            if TensorDescriptor is not None and isinstance(nargs[name], TensorDescriptor):
                nargs[name].block_shape = [1, nargs[block]]

    return set_blocks
