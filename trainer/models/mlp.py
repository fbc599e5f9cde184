"""SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

import torch
from torch import nn

from gristmill.trainer import ops


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(d_model, hidden, bias=False)
        self.up = nn.Linear(d_model, hidden, bias=False)
        self.down = nn.Linear(hidden, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(ops.swiglu(self.gate(x), self.up(x)))
