"""SwiGLU in plain PyTorch: the definition the Triton kernel is tested and benchmarked against."""

import torch
import torch.nn.functional as F


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, the gated activation of a Llama-style MLP."""
    return F.silu(gate) * up


def swiglu_halves_reference(gate_up: torch.Tensor) -> torch.Tensor:
    """swiglu_reference of the first (gate) and second (up) half of the last dim."""
    return swiglu_reference(*gate_up.chunk(2, dim=-1))
