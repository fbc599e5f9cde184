"""SwiGLU feed-forward: down(silu(gate(x)) * up(x)), gate and up as one projection."""

from torch import nn


class SwiGLU(nn.Module):
    """The MLP's two projections; the attention block runs them with the norm before them in one op
    (`ops.project_norm_mlp`)."""

    def __init__(self, d_model: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d_model, 2 * hidden, bias=False)  # output [gate | up]
        self.down = nn.Linear(hidden, d_model, bias=False)
