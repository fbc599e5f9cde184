"""Plain-PyTorch causal depthwise conv1d whose window never reaches back across a document start."""

from itertools import pairwise

import torch
import torch.nn.functional as F

from gristmill.kernels.ssd.validation import check_cu_seqlens, check_cu_seqlens_values

ACTIVATIONS = (None, "silu")


def check_conv1d_inputs(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cu_seqlens: torch.Tensor | None, activation
) -> None:
    if x.dim() != 2:
        raise ValueError(f"x must be [T, C], got shape {tuple(x.shape)}")
    if weight.dim() != 2 or weight.shape[0] != x.shape[1]:
        raise ValueError(f"weight must be [C, W] with C={x.shape[1]}, got {tuple(weight.shape)}")
    if bias is not None and bias.shape != (x.shape[1],):
        raise ValueError(f"bias must be [C] = {(x.shape[1],)}, got {tuple(bias.shape)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    check_cu_seqlens(cu_seqlens, x.shape[0], x.device)


def causal_conv1d_reference(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    cu_seqlens: torch.Tensor | None = None,
    activation: str | None = "silu",
) -> torch.Tensor:
    """x `[T, C]`, weight `[C, W]`: y_t = act(bias + sum_k weight[:, k] x_{t-W+1+k}), computed per document."""
    check_conv1d_inputs(x, weight, bias, cu_seqlens, activation)
    T, channels = x.shape
    width = weight.shape[1]
    if cu_seqlens is not None:
        check_cu_seqlens_values(cu_seqlens, T)
    bounds = [0, T] if cu_seqlens is None else cu_seqlens.tolist()
    pieces = []
    for begin, end in pairwise(bounds):
        if begin == end:
            continue
        doc = x[begin:end].float().t()[None]  # [1, C, len]
        out = F.conv1d(F.pad(doc, (width - 1, 0)), weight.float()[:, None, :], bias=None, groups=channels)
        pieces.append(out[0].t())
    y = torch.cat(pieces) if pieces else x.float()
    if bias is not None:
        y = y + bias.float()
    if activation == "silu":
        y = F.silu(y)
    return y.to(x.dtype)
