"""A weight's gradient written in the weight's own dtype by the GEMM that computes it.

Under autocast a float32 weight reaches a bf16 matmul through a cast, and the cast's backward copies the bf16
gradient into a float32 one: a pass over every projection weight per step. The GEMM ops that take the float32
weight and cast it inside their forward instead hand back its gradient straight from the weight-gradient GEMM,
which accumulates in float32 anyway: cuBLAS stores float32 (`aten::mm.dtype`, torch >= 2.8) and quack's GEMMs take
`out_dtype`.
"""

import functools

import torch


@functools.cache
def _mm_stores_dtype() -> bool:
    return "dtype" in torch.ops.aten.mm.overloads()


def weight_gradient(grad_t: torch.Tensor, inputs: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """grad_t `[n, T]` @ inputs `[T, k]` in `dtype`: stored in it by cuBLAS where it can, else cast after."""
    if dtype == grad_t.dtype:
        return grad_t @ inputs
    if grad_t.is_cuda and dtype == torch.float32 and _mm_stores_dtype():
        return torch.mm(grad_t, inputs, out_dtype=dtype)
    return (grad_t @ inputs).to(dtype)
