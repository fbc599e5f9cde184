"""Document offsets checked on the host by whoever made them, so that no kernel reads them back from the device.

The attention and SSD kernels check a batch's `cu_seqlens` values once per tensor, and reading values back is a
host sync: the GPU's queue runs empty at the first layer of every step, and the host has to launch its way ahead
again from there. A trainer builds the offsets on the host anyway; `trust_host_offsets` checks them there and
records the device copy as checked in both kernel families' memos.
"""

from collections.abc import Sequence

import torch

from gristmill.kernels.attention.inputs import mark_offsets_checked as mark_attention_offsets
from gristmill.kernels.ssd.documents import mark_offsets_checked as mark_ssd_offsets


def host_offsets_problem(offsets: Sequence[int], max_seqlen: int) -> str | None:
    """What is wrong with document offsets (from 0, never falling, no document longer than max_seqlen), or None."""
    if len(offsets) < 2 or offsets[0] != 0:
        return f"cu_seqlens must start at 0 and hold at least 2 entries, got {list(offsets[:3])}"
    lengths = [end - start for start, end in zip(offsets[:-1], offsets[1:])]
    if min(lengths) < 0:
        return "cu_seqlens must be non-decreasing (a document length is negative)"
    if max(lengths) > max_seqlen:
        return f"max_seqlen={max_seqlen} is below the longest document ({max(lengths)} tokens)"
    return None


def trust_host_offsets(cu_seqlens: torch.Tensor, host_offsets: Sequence[int], max_seqlen: int) -> None:
    """Checks `host_offsets` (ValueError if wrong) and records `cu_seqlens`, their copy on the kernels' device, as
    checked for a stream of `host_offsets[-1]` tokens and documents of at most `max_seqlen`."""
    problem = host_offsets_problem(host_offsets, max_seqlen)
    if problem is not None:
        raise ValueError(problem)
    total_tokens = host_offsets[-1]
    mark_attention_offsets(cu_seqlens, total_tokens, max_seqlen)
    mark_ssd_offsets(cu_seqlens, total_tokens)
