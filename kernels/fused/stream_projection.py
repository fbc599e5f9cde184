"""stream + x @ weight.T with the add in quack's GEMM epilogue (optional dependency `quack-kernels`, Hopper and newer).

The output projections of attention and Mamba2 add into the residual stream. Through `torch.addmm` cuBLAS reads the
stream in its epilogue, but ATen first copies the stream into the fresh output tensor (beta = 1 then adds it onto
itself): a 128 MiB device copy per call at the 350m models' shape, 24 to 30 per step. quack's `gemm_add` reads the
stream in its epilogue and writes only the sum.
"""

import torch

from gristmill.kernels.fused.quack_support import QuackFailed, compute_dtype, describe_failure, hopper_reason
from gristmill.kernels.fused.swiglu_mlp.quack_mlp import _quack_gemms


class QuackProjectionFailed(QuackFailed):
    """quack raised on an output projection; the projections can go on with torch.addmm."""


_failure: str | None = None
"""Why quack's projection failed in this process, once it has: from then on the unavailable reason says so."""


class _ProjectIntoStream(torch.autograd.Function):
    """Forward through quack's gemm_add; the backward is the plain linear's two GEMMs, and the stream's gradient is
    the output's."""

    @staticmethod
    def forward(ctx, x, weight, stream, gemm_add):
        ctx.save_for_backward(x, weight)
        return gemm_add(x, weight.T, stream)

    @staticmethod
    def backward(ctx, dout):
        x, weight = ctx.saved_tensors
        dx = dout @ weight if ctx.needs_input_grad[0] else None
        dweight = dout.T @ x if ctx.needs_input_grad[1] else None
        return dx, dweight, dout, None


def project_into_stream_unavailable_reason(x: torch.Tensor, weight: torch.Tensor, stream: torch.Tensor) -> str | None:
    """None when `project_into_stream` can run these inputs on quack, else why not (the caller uses torch.addmm)."""
    if _failure is not None:
        return f"quack failed earlier in this run: {_failure}"
    device = hopper_reason(x)
    if device is not None:
        return device
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1] or stream.shape != (x.shape[0], weight.shape[0]):
        return f"x {tuple(x.shape)}, weight {tuple(weight.shape)}, stream {tuple(stream.shape)} are not [T, k], [d, k], [T, d]"
    if x.shape[1] % 8 or weight.shape[0] % 8:
        return f"quack's GEMMs need widths in multiples of 8, got {x.shape[1]} -> {weight.shape[0]}"
    dtypes = {compute_dtype(t) for t in (x, weight, stream)}
    if not dtypes <= {torch.bfloat16, torch.float16} or len(dtypes) > 1:
        return f"quack's projection runs in one of bf16 or fp16, these inputs compute in {sorted(map(str, dtypes))}"
    return _quack_gemms()[1]


def project_into_stream(x: torch.Tensor, weight: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
    """stream + x @ weight.T, differentiable in all three; check `project_into_stream_unavailable_reason` first.
    Under autocast the inputs are cast as a matmul would cast them. A failure inside quack raises
    `QuackProjectionFailed` and makes every later unavailable reason name it."""
    global _failure
    gemms, reason = _quack_gemms()
    if gemms is None:
        raise ValueError(f"project_into_stream needs quack-kernels: {reason}")
    if torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        x, weight, stream = (t.to(dtype) for t in (x, weight, stream))
    with torch.autocast("cuda", enabled=False):
        try:
            return _ProjectIntoStream.apply(x, weight, stream, gemms.gemm_add)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as error:  # quack's own failure (compile, cache key, library): recorded, then reported
            _failure = describe_failure(error)
            raise QuackProjectionFailed(_failure) from error
