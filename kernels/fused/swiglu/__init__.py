"""Fused SwiGLU activation; see README.md for the math."""

from gristmill.kernels.fused.swiglu.reference import swiglu_reference
from gristmill.kernels.fused.swiglu.triton_fwd_bwd import swiglu

__all__ = ["swiglu", "swiglu_reference"]
