"""x @ W.T with the forward and the input gradient on quack's autotuned GEMMs, the weight gradient on cuBLAS.

Measured on an H100 at the attention projections' shapes (T 65536, d 1024 -> 1536 and 1024 -> 1024, bf16): quack's
tuned GEMM ran the forward and the input gradient 1.06-1.11x faster than cuBLAS, the weight gradient (K = T)
0.64-0.84x, so that one stays on cuBLAS. The first call of each new shape autotunes (seconds per shape on an H100;
`QUACK_CACHE_AUTOTUNING=1` keeps the results on disk).
"""

import functools
from collections.abc import Callable

import torch

from gristmill.kernels.fused.quack_support import FailureRecord, QuackFailed, compute_dtype, hopper_reason


class QuackProjectionFailed(QuackFailed):
    """quack raised on a projection; projections can go on with cuBLAS."""


_failures = FailureRecord(QuackProjectionFailed)


@functools.cache
def _quack_gemm() -> tuple[Callable | None, str | None]:
    """quack's GEMM, or None and why it cannot be imported (not installed, or its CUDA libraries fail)."""
    try:
        from quack.gemm_interface import gemm
    except Exception as error:  # any import failure means "use cuBLAS"; the reason is reported
        return None, f"{type(error).__name__}: {error}"
    return gemm, None


class _QuackProjection(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, gemm):
        ctx.save_for_backward(x, weight)
        ctx.gemm = gemm
        return gemm(x, weight.T, tuned=True, dynamic_scheduler=True)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy = dy if dy.stride(-1) == 1 else dy.contiguous()
        dx = ctx.gemm(dy, weight, tuned=True, dynamic_scheduler=True) if ctx.needs_input_grad[0] else None
        dweight = torch.mm(dy.t(), x) if ctx.needs_input_grad[1] else None
        return dx, dweight, None


def quack_projection_unavailable_reason(x: torch.Tensor, weight: torch.Tensor) -> str | None:
    """None when `quack_projection` can run these inputs, else why not (the caller takes cuBLAS)."""
    if _failures.reason is not None:
        return _failures.earlier()
    device = hopper_reason(x)
    if device is not None:
        return device
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        return f"x {tuple(x.shape)} and weight {tuple(weight.shape)} are not [T, d_in] and [d_out, d_in]"
    if weight.shape[0] % 8 or weight.shape[1] % 8:
        return f"both widths of weight {tuple(weight.shape)} must be multiples of 8 for quack's GEMMs"
    dtypes = {compute_dtype(x), compute_dtype(weight)}
    if not dtypes <= {torch.bfloat16, torch.float16} or len(dtypes) > 1:
        return f"quack's projections compute in one of bf16 or fp16, these inputs in {sorted(map(str, dtypes))}"
    return _quack_gemm()[1]


def quack_projection(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x `[T, d_in]` @ weight `[d_out, d_in]`.T, differentiable in both; check `quack_projection_unavailable_reason`
    first. Under autocast both are cast as a matmul would cast them (quack's GEMM is not an autocast op). A failure
    inside quack's forward raises `QuackProjectionFailed` and makes every later unavailable reason name it."""
    gemm, reason = _quack_gemm()
    if gemm is None:
        raise ValueError(f"quack_projection needs quack-kernels: {reason}")
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        x, weight = x.to(dtype), weight.to(dtype)
    if x.dtype != weight.dtype:  # a caller's mix-up, not quack's failure: it must not switch quack off for the run
        raise ValueError(f"quack_projection: x ({x.dtype}) and weight ({weight.dtype}) need one dtype outside autocast")
    x = x if x.stride(-1) == 1 else x.contiguous()
    with torch.autocast("cuda", enabled=False):
        return _failures.call(_QuackProjection.apply, x, weight, gemm)
