"""Input checks shared by the Triton path and the reference, so both reject the same mistakes."""

import math

import torch

from gristmill.kernels.tensor_memo import TensorMemo

OFFSETS_MEMO = TensorMemo()
"""What the attention kernels derive from `cu_seqlens`: the values' check and the documents' launch order."""


def _check_shapes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.dim() != 3:
            raise ValueError(f"{name} must be [T, H, D], got shape {tuple(x.shape)}")
    if k.shape != v.shape:
        raise ValueError(f"k and v must have the same shape, got {tuple(k.shape)} and {tuple(v.shape)}")
    if q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree on tokens T and head dim D")
    heads_q, heads_kv = q.shape[1], k.shape[1]
    if heads_kv == 0 or heads_q % heads_kv != 0:
        raise ValueError(f"kv heads ({heads_kv}) must divide q heads ({heads_q})")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must share a device, got {q.device}, {k.device}, {v.device}")


def check_cu_seqlens(cu_seqlens: torch.Tensor, total_tokens: int, max_seqlen: int, device: torch.device) -> None:
    """Raises ValueError unless cu_seqlens is int32 offsets on `device` from 0 to total_tokens, no document longer than
    max_seqlen; reads the values back once per tensor (and per in-place change), never while traced or captured,
    nor for a tensor whose maker checked its values on the host (`mark_offsets_checked`)."""
    if not isinstance(cu_seqlens, torch.Tensor) or cu_seqlens.dtype != torch.int32:
        kind = cu_seqlens.dtype if isinstance(cu_seqlens, torch.Tensor) else type(cu_seqlens).__name__
        raise ValueError(f"cu_seqlens must be an int32 tensor, got {kind}")
    if cu_seqlens.dim() != 1 or cu_seqlens.numel() < 2:
        raise ValueError(f"cu_seqlens must be 1-D with at least 2 entries, got shape {tuple(cu_seqlens.shape)}")
    if cu_seqlens.device != device:
        raise ValueError(f"cu_seqlens is on {cu_seqlens.device} but q is on {device}")
    if isinstance(max_seqlen, bool) or not isinstance(max_seqlen, int) or max_seqlen < 0:
        raise ValueError(f"max_seqlen must be a non-negative int, got {max_seqlen!r}")
    if torch.compiler.is_compiling() or (cu_seqlens.is_cuda and torch.cuda.is_current_stream_capturing()):
        return  # reading values back would break the traced or captured graph; eager calls check them
    OFFSETS_MEMO.get(
        cu_seqlens, _checked_key(total_tokens, max_seqlen),
        lambda: _check_offset_values(cu_seqlens, total_tokens, max_seqlen),
    )  # fmt: skip


def mark_offsets_checked(cu_seqlens: torch.Tensor, total_tokens: int, max_seqlen: int) -> None:
    """Records cu_seqlens' values as checked for these bounds (its maker checked them on the host), so
    `check_cu_seqlens` reads nothing back for this tensor (`gristmill.kernels.host_offsets`)."""
    OFFSETS_MEMO.get(cu_seqlens, _checked_key(total_tokens, max_seqlen), lambda: True)


def _checked_key(total_tokens: int, max_seqlen: int) -> tuple[str, int, int]:
    """The memo key under which a cu_seqlens counts as checked for these bounds."""
    return ("checked", total_tokens, max_seqlen)


def _check_offset_values(cu_seqlens: torch.Tensor, total_tokens: int, max_seqlen: int) -> bool:
    """Raises ValueError unless the offsets run from 0 to T without falling and max_seqlen bounds every
    document; one device-to-host read."""
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    first, last, shortest, longest = torch.stack([cu_seqlens[0], cu_seqlens[-1], lengths.min(), lengths.max()]).tolist()
    problem = offsets_problem(first, last, shortest, longest, total_tokens, max_seqlen)
    if problem is not None:
        raise ValueError(problem)
    return True


def offsets_problem(
    first: int, last: int, shortest: int, longest: int, total_tokens: int, max_seqlen: int
) -> str | None:
    """What is wrong with offsets whose first and last values and shortest and longest document these are, or None:
    they must run from 0 to T without falling, and max_seqlen must bound every document."""
    if first != 0 or last != total_tokens:
        return f"cu_seqlens must run from 0 to T={total_tokens}, got {first} .. {last}"
    if shortest < 0:
        return "cu_seqlens must be non-decreasing (a document length is negative)"
    if longest > max_seqlen:
        return f"max_seqlen={max_seqlen} is below the longest document ({longest} tokens)"
    return None


def check_attention_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cu_seqlens: torch.Tensor,
    max_seqlen: int,
    causal: bool,
    window: int | None,
) -> None:
    """Raises ValueError naming the offending value; reads cu_seqlens back once per tensor (and per in-place change)."""
    _check_shapes(q, k, v)
    if window is not None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window must be a positive int or None, got {window!r}")
        if not causal:
            raise ValueError("window needs causal=True (a sliding window looks back from each query)")
    check_cu_seqlens(cu_seqlens, q.shape[0], max_seqlen, q.device)


def resolve_softmax_scale(head_dim: int, softmax_scale: float | None) -> float:
    """The usual 1/sqrt(D) unless the caller set one; the kernels need it positive."""
    if softmax_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if not softmax_scale > 0:
        raise ValueError(f"softmax_scale must be positive, got {softmax_scale!r}")
    return float(softmax_scale)
