"""Rotary position embedding in plain PyTorch, interleaved layout: pair i is columns (2i, 2i + 1) of a head.

The original RoFormer / Meta Llama layout (a head read as D/2 complex numbers). The half-rotation layout of
GPT-NeoX / Hugging Face pairs i with i + D/2 instead; the two differ by a fixed permutation of each head's q and k
projection rows, so neither trains better, but adjacent pairs are what a GEMM epilogue can rotate: each thread
holds both columns of a pair (kernels/attention/projected_rotary_qkv.py).
"""

import torch


def rope_inv_freq(head_dim: int, theta: float, device: torch.device | str | None = None) -> torch.Tensor:
    """theta^(-2i/D) for pairs i < D/2, float64: the angle of pair i at position p is p times its entry."""
    return theta ** -(torch.arange(0, head_dim, 2, dtype=torch.float64, device=device) / head_dim)


def rope_cos_sin(position_ids: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin `[T, D/2]` (float32) of the angles position_ids[t] * theta^(-2i/D).

    Shared with the kernels, which read them instead of evaluating sin/cos themselves. The angles are taken in
    float64, so every path that rotates (these tables, or a GEMM epilogue evaluating them from the positions) agrees
    to float32 rounding even at positions in the thousands.
    """
    angles = position_ids.to(torch.float64)[:, None] * rope_inv_freq(head_dim, theta, position_ids.device)[None, :]
    return angles.cos().float(), angles.sin().float()


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    compute = x.to(torch.promote_types(x.dtype, torch.float32))
    x1, x2 = compute[..., 0::2], compute[..., 1::2]
    return torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1).flatten(-2).to(x.dtype)


def apply_rope_reference(
    q: torch.Tensor, k: torch.Tensor, position_ids: torch.Tensor, theta: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Out-of-place rotation of q `[T, Hq, D]` and k `[T, Hkv, D]` by the angles of `rope_cos_sin`."""
    cos, sin = rope_cos_sin(position_ids, q.shape[-1], theta)
    return _rotate(q, cos[:, None, :], sin[:, None, :]), _rotate(k, cos[:, None, :], sin[:, None, :])
