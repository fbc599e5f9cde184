"""RMSNorm as a module whose forward goes through the kernel dispatch, with the residual add fused in."""

import torch
from torch import nn

from gristmill.trainer import ops


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, residual: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(norm(stream), stream) with stream = x + residual (x alone without one): the residual add rides on
        the norm's pass over each row, in both directions, instead of being a kernel of its own."""
        if residual is None:
            return ops.rms_norm(x, self.weight, self.eps), x
        return ops.rms_norm(x, self.weight, self.eps, residual)

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
