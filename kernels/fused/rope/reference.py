"""Rotary position embedding in plain PyTorch, half-rotation (GPT-NeoX / Llama) layout."""

import torch


def rope_inv_freq(head_dim: int, theta: float, device: torch.device) -> torch.Tensor:
    """theta^(-2i/D) for i < D/2 in float32; shared with the kernel so both round angles alike."""
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim
    return 1.0 / theta**exponents


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    compute = x.to(torch.promote_types(x.dtype, torch.float32))
    x1, x2 = compute.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def apply_rope_reference(
    q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-place rotation of q `[T, Hq, D]` and k `[T, Hkv, D]` by angles position_ids[t] * inv_freq."""
    angles = position_ids.to(torch.float32)[:, None] * rope_inv_freq(q.shape[-1], theta, q.device)[None, :]
    cos, sin = angles.cos()[:, None, :], angles.sin()[:, None, :]
    return _rotate(q, cos, sin), _rotate(k, cos, sin)
