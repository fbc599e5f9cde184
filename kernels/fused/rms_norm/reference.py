"""RMSNorm in plain PyTorch: the definitions the Triton kernels are tested and benchmarked against."""

import torch
import torch.nn.functional as F


def rms_norm_reference(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """y = h / rms(h) * weight with h = x (+ residual); statistics in float32, y in x's dtype.

    With `residual`, also returns h, the pre-norm residual stream the next block adds to.
    """
    hidden = x if residual is None else x + residual
    hidden32 = hidden.float() if hidden.dtype in (torch.float16, torch.bfloat16) else hidden
    rstd = torch.rsqrt(hidden32.pow(2).mean(-1, keepdim=True) + eps)
    y = (hidden32 * rstd * weight.to(hidden32.dtype)).to(x.dtype)
    return y if residual is None else (y, hidden)


def gated_rms_norm_reference(
    x: torch.Tensor, gate: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6
) -> torch.Tensor:
    """Mamba2's gated norm: rms_norm(x * silu(gate)) * weight, with the gated input kept in float32 (never rounded
    to x's dtype, as the fused kernel holds it in registers); y in x's dtype."""
    compute = torch.promote_types(x.dtype, torch.float32)
    gated = x.to(compute) * F.silu(gate.to(compute))
    return rms_norm_reference(gated, weight, eps).to(x.dtype)
