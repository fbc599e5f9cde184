"""Fused training kernels (RMSNorm, Mamba2's gated RMSNorm, SwiGLU, RoPE, linear + cross-entropy), each beside its
reference."""

from gristmill.kernels.fused.linear_cross_entropy import linear_cross_entropy, linear_cross_entropy_reference
from gristmill.kernels.fused.rms_norm import gated_rms_norm, gated_rms_norm_reference, rms_norm, rms_norm_reference
from gristmill.kernels.fused.rope import apply_rope, apply_rope_reference
from gristmill.kernels.fused.swiglu import swiglu, swiglu_halves, swiglu_halves_reference, swiglu_reference

__all__ = [
    "apply_rope",
    "apply_rope_reference",
    "gated_rms_norm",
    "gated_rms_norm_reference",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
    "rms_norm",
    "rms_norm_reference",
    "swiglu",
    "swiglu_halves",
    "swiglu_halves_reference",
    "swiglu_reference",
]
