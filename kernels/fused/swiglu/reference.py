"""SwiGLU in plain PyTorch: the definition the Triton kernel is tested and benchmarked against."""

import torch
import torch.nn.functional as F


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """silu(gate) * up, the gated activation of a Llama-style MLP."""
    return F.silu(gate) * up
