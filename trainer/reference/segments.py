"""Per-token views of `cu_seqlens` (the packed-batch convention): which segment a token is in, and where."""

import torch


def segment_ids(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Index of the segment each of the `total` flattened tokens belongs to (int64 [total])."""
    tokens = torch.arange(total, device=cu_seqlens.device)
    return torch.searchsorted(cu_seqlens[1:].to(torch.int64), tokens, right=True)


def positions_in_segment(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Offset of each token from the start of its segment (int64 [total]); 0 at every boundary."""
    starts = cu_seqlens.to(torch.int64)[segment_ids(cu_seqlens, total)]
    return torch.arange(total, device=cu_seqlens.device) - starts


def segment_starts(cu_seqlens: torch.Tensor, total: int) -> torch.Tensor:
    """Bool [total]: True where a segment begins, i.e. where sequence state must reset."""
    return positions_in_segment(cu_seqlens, total) == 0
