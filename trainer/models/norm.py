"""RMSNorm as a module whose forward goes through the kernel dispatch."""

import torch
from torch import nn

from gristmill.trainer import ops


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, stream: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(stream), stream), the stream handed back through the norm: the gradient from where the stream is
        used next (a projection adding into it) joins the norm's own in one backward pass."""
        return ops.rms_norm(stream, self.weight, self.eps)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
