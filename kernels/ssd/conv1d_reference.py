"""Plain-PyTorch causal depthwise conv1d whose window never reaches back across a document start: the ground
truth of the Triton conv1d and the trainer's CPU path (shifted adds, so no per-document loop or host sync)."""

import torch
import torch.nn.functional as F

from gristmill.kernels.ssd.documents import cached_token_doc_start
from gristmill.kernels.ssd.validation import check_cu_seqlens

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
    """x `[T, C]`, weight `[C, W]`: y_t = act(bias + sum_k weight[:, k] x_{t-W+1+k}) in fp32, y in x's dtype.

    A tap reaching back past the start of its token's document reads zero, as if each document were padded
    on the left on its own.
    """
    check_conv1d_inputs(x, weight, bias, cu_seqlens, activation)
    total = x.shape[0]
    width = weight.shape[1]
    position = torch.arange(total, device=x.device)
    if cu_seqlens is not None:
        position = position - cached_token_doc_start(cu_seqlens, total)
    xf, wf = x.float(), weight.float()
    y = xf * wf[:, width - 1]
    for shift in range(1, width):
        earlier = F.pad(xf, (0, 0, shift, 0))[:total]
        y = y + earlier * wf[:, width - 1 - shift] * (position >= shift)[:, None]
    if bias is not None:
        y = y + bias.float()
    if activation == "silu":
        y = F.silu(y)
    return y.to(x.dtype)
