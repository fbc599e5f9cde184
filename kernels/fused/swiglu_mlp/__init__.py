"""The whole SwiGLU MLP, down(silu(x W_gate^T) * x W_up^T) W_down^T, through GEMMs that apply the activation (and its
gradient) in their epilogues, alone or with the attention output projection, residual add and RMSNorm before it;
README.md says why and what it measured."""

from gristmill.kernels.fused.swiglu_mlp.interleave import interleave_gate_up
from gristmill.kernels.fused.swiglu_mlp.quack_mlp import QuackMLPFailed, swiglu_mlp, swiglu_mlp_unavailable_reason
from gristmill.kernels.fused.swiglu_mlp.quack_projected_mlp import (
    projected_norm_mlp, projected_norm_mlp_unavailable_reason,
)

__all__ = [
    "QuackMLPFailed", "interleave_gate_up", "projected_norm_mlp", "projected_norm_mlp_unavailable_reason",
    "swiglu_mlp", "swiglu_mlp_unavailable_reason",
]
