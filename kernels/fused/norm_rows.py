"""What a kernel does for an RMSNorm whose backward is folded into the GEMM before it.

When an RMSNorm's row scale rstd is applied in the epilogue of the GEMM after the norm (the GEMM reads the
stream times the norm's weight, unnormalized), the GEMM's input gradient and its weight gradient want the
output's gradient rows times rstd, and the norm's backward wants each row's sum of output gradient times output
(rstd's gradient up to a factor). Whichever kernels write that output gradient, column block by column block,
have both values in registers: they scale their rows before the store and sum the products on the way, so no
pass over the gradient is left for either.
"""

from typing import NamedTuple

import torch


class NormRows(NamedTuple):
    scale: torch.Tensor
    """`[T]` float32: multiplies each gradient row before it is stored (the norm's rstd)"""
    dots: torch.Tensor
    """`[T]` float32: each row's sum over the kernel's columns of the unscaled gradient times the kernel's input
    there (the GEMM's output)"""
