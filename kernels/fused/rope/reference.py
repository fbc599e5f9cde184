"""Rotary position embedding in plain PyTorch, half-rotation (GPT-NeoX / Llama) layout."""

import torch


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin `[T, D/2]` (float32) of the angles position_ids[t] * theta^(-2i/D).

    Shared with the kernel, which reads them instead of evaluating sin/cos itself: both paths then use
    the same correctly range-reduced float32 values, even at positions in the thousands.
    """
    exponents = torch.arange(0, head_dim, 2, dtype=torch.float32, device=position_ids.device) / head_dim
    angles = position_ids.to(torch.float32)[:, None] * (1.0 / theta**exponents)[None, :]
    return angles.cos(), angles.sin()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    compute = x.to(torch.promote_types(x.dtype, torch.float32))
    x1, x2 = compute.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).to(x.dtype)


def apply_rope_reference(
    q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-place rotation of q `[T, Hq, D]` and k `[T, Hkv, D]` by the angles of `rope_cos_sin`."""
    cos, sin = rope_cos_sin(position_ids, q.shape[-1], theta)
    return _rotate(q, cos[:, None, :], sin[:, None, :]), _rotate(k, cos[:, None, :], sin[:, None, :])
