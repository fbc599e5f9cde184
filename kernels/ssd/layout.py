"""Row-strided tensors: the SSD and conv1d kernels address a token's row through its own stride, so column
slices of a wider tensor (the Mamba2 in_proj output, the conv output) are read and written in place."""

import torch


def rows_in_place(tensor: torch.Tensor) -> torch.Tensor:
    """`tensor` itself when every row (all dims after the first) is contiguous, whatever the stride between
    rows; a contiguous copy otherwise."""
    expected = 1
    for size, stride in zip(reversed(tensor.shape[1:]), reversed(tensor.stride()[1:])):
        if size != 1 and stride != expected:
            return tensor.contiguous()
        expected *= size
    return tensor


def empty_rows_like(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous buffer of `tensor`'s shape, dtype and device: the gradient buffer of a possibly row-strided
    view (`torch.empty_like` would copy the view's strides)."""
    return torch.empty(tensor.shape, device=tensor.device, dtype=tensor.dtype)
