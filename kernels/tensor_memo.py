"""A memo of values derived from one tensor, such as the packed batch's `cu_seqlens` or `position_ids`."""

import weakref
from collections.abc import Callable, Hashable
from typing import TypeVar

import torch

Derived = TypeVar("Derived")


class TensorMemo:
    """Values derived from the last tensor seen, kept while it stays the same tensor at the same version: every
    layer of a model gets the same `cu_seqlens` and `position_ids` in a step, so only the first call per batch
    pays the value check and what the kernels derive from the tensor (document order, chunk plan, RoPE tables).
    Held weakly; an in-place edit bumps the tensor's version and drops them. A CUDA graph capture builds its own
    (its replays see new values in the same tensor), traced graphs and inference tensors (no version counter)
    build on every call."""

    def __init__(self) -> None:
        self._source: weakref.ref | None = None
        self._stamp: tuple[int, int, bool] | None = None
        self._values: dict[Hashable, object] = {}

    def get(self, source: torch.Tensor, key: Hashable, build: Callable[[], Derived]) -> Derived:
        if torch.compiler.is_compiling() or source.is_inference():
            return build()
        capturing = source.is_cuda and torch.cuda.is_current_stream_capturing()
        stamp = (source.data_ptr(), source._version, capturing)
        if self._source is None or self._source() is not source or self._stamp != stamp:
            self._source, self._stamp, self._values = weakref.ref(source), stamp, {}
        if key not in self._values:
            self._values[key] = build()
        return self._values[key]
