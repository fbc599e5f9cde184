"""SwiGLU feed-forward: down(silu(gate(x)) * up(x)), gate and up as one projection."""

import torch
from torch import nn

from gristmill.trainer import ops


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)  # output [gate | up]
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor, stream: torch.Tensor) -> torch.Tensor:
        """x [T, d_model] -> the residual stream [T, d_model] with this layer's output added."""
        return ops.swiglu_mlp(x, self.gate_up.weight, self.down.weight, stream)
