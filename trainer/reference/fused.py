"""Reference versions of the ops `gristmill.kernels.fused` fuses: RMSNorm, SwiGLU, RoPE, linear + CE."""

import torch
import torch.nn.functional as F


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Normalizes in float32 whatever the input dtype, then returns x's dtype."""
    xf = x.float()
    normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return (normed * weight.float()).to(x.dtype)


def swiglu(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return F.silu(gate) * up


def apply_rope(
    q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotates q [T, Hq, D] and k [T, Hkv, D] by their token's position (rotate-half pairing: i with i + D/2)."""
    half = q.shape[-1] // 2
    inv_freq = theta ** (-torch.arange(half, device=q.device, dtype=torch.float32) / half)
    angle = position_ids.to(torch.float32)[:, None] * inv_freq  # [T, D/2]
    cos = torch.cat((angle.cos(), angle.cos()), -1)[:, None]
    sin = torch.cat((angle.sin(), angle.sin()), -1)[:, None]

    def rotate(x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        rotated = torch.cat((-xf[..., half:], xf[..., :half]), -1)
        return (xf * cos + rotated * sin).to(x.dtype)

    return rotate(q), rotate(k)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = -100,
    z_loss: float = 0.0,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Summed token loss of logits = hidden @ weight.T, in float32; a sum so accumulation stays exact."""
    logits = (hidden @ weight.t()).float()
    loss = F.cross_entropy(
        logits, labels, ignore_index=ignore_index, reduction="sum", label_smoothing=label_smoothing
    )
    if z_loss:
        valid = labels != ignore_index
        loss = loss + z_loss * (torch.logsumexp(logits[valid], dim=-1) ** 2).sum()
    return loss
