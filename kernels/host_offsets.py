"""Document offsets checked on the host by whoever made them, so that no kernel reads them back from the device.

The attention and SSD kernels check a batch's `cu_seqlens` values once per tensor, and reading values back is a
host sync: the GPU's queue runs empty at the first layer of every step, and the host has to launch its way ahead
again from there. A trainer builds the offsets on the host anyway; `trust_host_offsets` checks them there and
records the device copy as checked in both kernel families' memos.
"""

from collections.abc import Sequence

import torch

from gristmill.kernels.attention.inputs import mark_offsets_checked as mark_attention_offsets
from gristmill.kernels.attention.inputs import offsets_problem
from gristmill.kernels.ssd.documents import mark_offsets_checked as mark_ssd_offsets


def trust_host_offsets(cu_seqlens: torch.Tensor, host_offsets: Sequence[int], max_seqlen: int) -> None:
    """Checks `host_offsets` as the kernels would (ValueError if wrong) and records `cu_seqlens`, their copy on the
    kernels' device, as checked for a stream of `host_offsets[-1]` tokens and documents of at most `max_seqlen`."""
    if len(host_offsets) < 2:
        raise ValueError(f"cu_seqlens must hold at least 2 entries, got {list(host_offsets)}")
    total_tokens = host_offsets[-1]
    lengths = [end - start for start, end in zip(host_offsets[:-1], host_offsets[1:])]
    problem = offsets_problem(host_offsets[0], total_tokens, min(lengths), max(lengths), total_tokens, max_seqlen)
    if problem is not None:
        raise ValueError(problem)
    mark_attention_offsets(cu_seqlens, total_tokens, max_seqlen)
    mark_ssd_offsets(cu_seqlens, total_tokens)
