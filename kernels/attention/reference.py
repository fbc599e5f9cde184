"""Plain-PyTorch attention over packed documents: the ground truth for tests and the CPU path."""

import torch

from gristmill.kernels.attention.inputs import check_attention_inputs, resolve_softmax_scale


def visible_mask(seqlen: int, causal: bool, window: int | None, device: torch.device) -> torch.Tensor:
    """[L, L] bool: query i sees key j when j <= i (causal) and i - j < window (sliding window)."""
    rows = torch.arange(seqlen, device=device)[:, None]
    cols = torch.arange(seqlen, device=device)[None, :]
    mask = torch.ones(seqlen, seqlen, dtype=torch.bool, device=device)
    if causal:
        mask &= cols <= rows
    if window is not None:
        mask &= rows - cols < window
    return mask


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    causal: bool = True,
    window: int | None = None,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """Exact attention, one document at a time in fp32; same signature and result as flash_attention_varlen.

    q `[T, Hq, D]`, k and v `[T, Hkv, D]`, cu_seqlens int32 `[N+1]`; returns `[T, Hq, D]` in q's dtype.
    """
    check_attention_inputs(q, k, v, cu_seqlens, max_seqlen, causal, window)
    scale = resolve_softmax_scale(q.shape[-1], softmax_scale)
    group = q.shape[1] // k.shape[1]
    bounds = cu_seqlens.tolist()
    outputs = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end == start:
            continue
        q_doc = q[start:end].float().transpose(0, 1)
        k_doc = k[start:end].float().repeat_interleave(group, dim=1).transpose(0, 1)
        v_doc = v[start:end].float().repeat_interleave(group, dim=1).transpose(0, 1)
        scores = (q_doc @ k_doc.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~visible_mask(end - start, causal, window, q.device), float("-inf"))
        outputs.append((scores.softmax(dim=-1) @ v_doc).transpose(0, 1))
    if not outputs:
        return q.new_empty(q.shape)
    return torch.cat(outputs).to(q.dtype)
