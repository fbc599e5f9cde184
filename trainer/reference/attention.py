"""Causal attention over packed rows with SDPA: a block-diagonal mask keeps every document to itself."""

import torch
import torch.nn.functional as F

from gristmill.trainer.reference.segments import segment_ids


def varlen_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    rows: int,
    softmax_scale: float | None = None,
) -> torch.Tensor:
    """q [T, Hq, D], k/v [T, Hkv, D] -> [T, Hq, D]; T is `rows` equal rows and every row end is a boundary.

    Working row by row keeps the mask at rows x L x L instead of T x T. A batch with one segment per row
    (unpacked, padded rows) needs no mask at all and takes SDPA's plain causal path.
    """
    total, q_heads, head_dim = q.shape
    row_len = total // rows

    def to_rows(x: torch.Tensor) -> torch.Tensor:
        return x.view(rows, row_len, x.shape[1], head_dim).transpose(1, 2)

    grouped = q_heads != k.shape[1]
    if cu_seqlens.numel() - 1 == rows:
        out = F.scaled_dot_product_attention(
            to_rows(q), to_rows(k), to_rows(v), is_causal=True, scale=softmax_scale, enable_gqa=grouped
        )
    else:
        segment = segment_ids(cu_seqlens, total).view(rows, row_len)
        same_document = segment[:, :, None] == segment[:, None, :]
        causal = torch.ones(row_len, row_len, dtype=torch.bool, device=q.device).tril()
        mask = (same_document & causal)[:, None]
        out = F.scaled_dot_product_attention(
            to_rows(q), to_rows(k), to_rows(v), attn_mask=mask, scale=softmax_scale, enable_gqa=grouped
        )
    return out.transpose(1, 2).reshape(total, q_heads, head_dim)
