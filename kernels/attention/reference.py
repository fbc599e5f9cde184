"""Plain-PyTorch attention over packed documents, in two forms.

- `attention_reference`: one document at a time in fp32, any mask the kernel supports; the oracle the Triton
  kernel and `sdpa_attention_reference` are tested against.
- `sdpa_attention_reference`: causal only, through PyTorch's SDPA with a block-diagonal mask over rows of
  equal length; the trainer's fast CPU path (no per-document loop, autograd through SDPA).
"""

import torch
import torch.nn.functional as F

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
    """The oracle: exact attention, one document at a time in fp32; same signature as flash_attention_varlen.

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


def sdpa_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    *,
    rows: int = 1,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """The fast CPU path: causal attention in q's dtype, q `[T, Hq, D]`, k/v `[T, Hkv, D]` -> `[T, Hq, D]`.

    T holds `rows` rows of equal length and every row end must be a `cu_seqlens` boundary (as the packer
    makes them): working row by row keeps the mask at rows x L x L instead of T x T. With one document per
    row no mask is needed and SDPA takes its plain causal path.
    """
    check_attention_inputs(q, k, v, cu_seqlens, max_seqlen, causal=True, window=None)
    total, q_heads, head_dim = q.shape
    if rows < 1 or total % rows:
        raise ValueError(f"rows={rows} must be a positive divisor of the token count T={total}")
    row_len = total // rows

    def to_rows(x: torch.Tensor) -> torch.Tensor:
        return x.view(rows, row_len, x.shape[1], head_dim).transpose(1, 2)

    grouped = q_heads != k.shape[1]
    if not torch.compiler.is_compiling() and cu_seqlens.numel() - 1 == rows:
        out = F.scaled_dot_product_attention(
            to_rows(q), to_rows(k), to_rows(v), is_causal=True, scale=softmax_scale, enable_gqa=grouped
        )
    else:
        tokens = torch.arange(total, device=q.device, dtype=cu_seqlens.dtype)
        document = torch.searchsorted(cu_seqlens, tokens, right=True).view(rows, row_len)
        same_document = document[:, :, None] == document[:, None, :]
        causal = torch.ones(row_len, row_len, dtype=torch.bool, device=q.device).tril()
        mask = (same_document & causal)[:, None]
        out = F.scaled_dot_product_attention(
            to_rows(q), to_rows(k), to_rows(v), attn_mask=mask, scale=softmax_scale, enable_gqa=grouped
        )
    return out.transpose(1, 2).reshape(total, q_heads, head_dim)
