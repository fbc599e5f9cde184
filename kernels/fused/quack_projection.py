"""A linear projection on quack's GEMMs, optionally adding into the residual stream in its epilogue.

At the Mamba2 mixer's shapes on an H100 (T 65536; in_proj 1024 -> 4384, out_proj 2048 -> 1024) quack's tuned
GEMMs beat cuBLAS on the forward and the input gradient: in_proj 828 against 866 us forward and 875 against 977
us input gradient, out_proj with the stream added 420 against 505 us (ATen's addmm copies the stream into its
output before cuBLAS adds, quack reads it in the epilogue). The weight gradient stays on cuBLAS, which was faster
there (bench/results/fused.md run 10).
"""

import functools
from collections.abc import Callable
from typing import NamedTuple

import torch

from gristmill.kernels.fused.quack_support import (
    FailureRecord, QuackFailed, compute_dtype, half_precision_hopper_reason, import_quack,
)
from gristmill.kernels.fused.weight_gradient import weight_gradient

class QuackProjectionFailed(QuackFailed):
    """quack raised on a projection; the run can go on with cuBLAS."""


_failures = FailureRecord(QuackProjectionFailed)


class _QuackGEMMs(NamedTuple):
    gemm: Callable
    gemm_add: Callable


@functools.cache
def _quack_gemms() -> tuple[_QuackGEMMs | None, str | None]:
    """quack's plain and stream-adding GEMMs, or None and why they cannot be imported."""
    found, reason = import_quack(
        "projections: quack GEMMs for the forward and the input gradient",
        "quack.gemm_interface:gemm", "quack.gemm_interface:gemm_add",
    )
    return (None if found is None else _QuackGEMMs(*found)), reason


class _QuackProjection(torch.autograd.Function):
    """The weight comes in its own dtype and is cast here, so its gradient leaves cuBLAS in that dtype
    (weight_gradient.py)."""

    @staticmethod
    def forward(ctx, x, weight, stream, gemms):
        ctx.weight_dtype = weight.dtype
        weight = weight.to(x.dtype)
        ctx.save_for_backward(x, weight)
        ctx.gemms, ctx.has_stream = gemms, stream is not None
        if stream is None:
            return gemms.gemm(x, weight.T, dynamic_scheduler=True)
        return gemms.gemm_add(x, weight.T, stream, dynamic_scheduler=True)

    @staticmethod
    def backward(ctx, dy):
        x, weight = ctx.saved_tensors
        dy = dy if dy.stride(-1) == 1 else dy.contiguous()
        dx = ctx.gemms.gemm(dy, weight, dynamic_scheduler=True)
        return dx, weight_gradient(dy.T, x, ctx.weight_dtype), dy if ctx.has_stream else None, None


def quack_projection_unavailable_reason(x: torch.Tensor, weight: torch.Tensor) -> str | None:
    """None when `quack_projection` can run these inputs, else why not (the caller projects with cuBLAS)."""
    if (earlier := _failures.earlier()) is not None:
        return earlier
    if x.dim() != 2 or weight.dim() != 2 or weight.shape[1] != x.shape[1]:
        return f"x {tuple(x.shape)} and weight {tuple(weight.shape)} are not a [T, k] input and an [n, k] weight"
    if x.shape[1] % 8 or weight.shape[0] % 8:
        return f"the projection's widths ({x.shape[1]} -> {weight.shape[0]}) must be multiples of 8 for quack's GEMMs"
    return half_precision_hopper_reason(x, "quack's projection") or _quack_gemms()[1]


def quack_projection(x: torch.Tensor, weight: torch.Tensor, stream: torch.Tensor | None = None) -> torch.Tensor:
    """x @ weight.T (plus stream, added in the GEMM's epilogue), differentiable in all three; check
    `quack_projection_unavailable_reason` first. Under autocast the operands are cast as a matmul would cast them.
    A failure inside quack raises `QuackProjectionFailed` and makes every later availability check name it."""
    gemms, reason = _quack_gemms()
    if gemms is None:
        raise ValueError(f"quack_projection needs quack-kernels: {reason}")
    autocast = torch.is_autocast_enabled("cuda")
    if autocast:  # the weight is cast inside the op
        x = x.to(compute_dtype(x))
        stream = None if stream is None else stream.to(x.dtype)
    dtypes = [t.dtype for t in (x, stream, None if autocast else weight) if t is not None]
    if len(set(dtypes)) > 1:  # a caller's mix-up, not quack's failure: it must not switch quack off for the run
        raise ValueError(f"quack_projection: x, weight and stream need one dtype outside autocast, got {dtypes}")
    if stream is not None and stream.shape != (x.shape[0], weight.shape[0]):
        raise ValueError(f"quack_projection: stream {tuple(stream.shape)} must be [{x.shape[0]}, {weight.shape[0]}]")
    with torch.autocast("cuda", enabled=False):
        return _failures.call(_QuackProjection.apply, x, weight, stream, gemms)
