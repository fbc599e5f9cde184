"""Fused SwiGLU activation; see README.md for the math."""

from gristmill.kernels.fused.swiglu.reference import swiglu_halves_reference, swiglu_reference
from gristmill.kernels.fused.swiglu.triton_fwd_bwd import swiglu, swiglu_halves

__all__ = ["swiglu", "swiglu_halves", "swiglu_halves_reference", "swiglu_reference"]
