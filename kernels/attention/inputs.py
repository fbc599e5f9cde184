"""Input checks shared by the Triton path and the reference, so both reject the same mistakes."""

import math
import weakref

import torch


class _LastCheckedOffsets:
    """The last cu_seqlens whose values passed: every layer of a model gets the same tensor in a step, so
    only the first call per batch pays the device-to-host read. Held weakly; an in-place edit bumps the
    tensor's version and forces a new check."""

    def __init__(self) -> None:
        self._tensor: weakref.ref | None = None
        self._checked_as: tuple[int, int, int] | None = None

    def holds(self, cu_seqlens: torch.Tensor, checked_as: tuple[int, int, int]) -> bool:
        return self._tensor is not None and self._tensor() is cu_seqlens and self._checked_as == checked_as

    def remember(self, cu_seqlens: torch.Tensor, checked_as: tuple[int, int, int]) -> None:
        self._tensor, self._checked_as = weakref.ref(cu_seqlens), checked_as


_LAST_CHECKED = _LastCheckedOffsets()


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


def _check_cu_seqlens(cu_seqlens: torch.Tensor, total_tokens: int, max_seqlen: int, device: torch.device) -> None:
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
    # inference tensors keep no version counter, so an in-place edit could not be seen: check them every call
    checked_as = None if cu_seqlens.is_inference() else (cu_seqlens._version, total_tokens, max_seqlen)
    if checked_as is not None and _LAST_CHECKED.holds(cu_seqlens, checked_as):
        return
    lengths = cu_seqlens[1:] - cu_seqlens[:-1]
    first, last, shortest, longest = torch.stack([cu_seqlens[0], cu_seqlens[-1], lengths.min(), lengths.max()]).tolist()
    if first != 0 or last != total_tokens:
        raise ValueError(f"cu_seqlens must run from 0 to T={total_tokens}, got {first} .. {last}")
    if shortest < 0:
        raise ValueError("cu_seqlens must be non-decreasing (a document length is negative)")
    if longest > max_seqlen:
        raise ValueError(f"max_seqlen={max_seqlen} is below the longest document ({longest} tokens)")
    if checked_as is not None:
        _LAST_CHECKED.remember(cu_seqlens, checked_as)


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
    _check_cu_seqlens(cu_seqlens, q.shape[0], max_seqlen, q.device)


def resolve_softmax_scale(head_dim: int, softmax_scale: float | None) -> float:
    """The usual 1/sqrt(D) unless the caller set one; the kernels need it positive."""
    if softmax_scale is None:
        return 1.0 / math.sqrt(head_dim)
    if not softmax_scale > 0:
        raise ValueError(f"softmax_scale must be positive, got {softmax_scale!r}")
    return float(softmax_scale)
