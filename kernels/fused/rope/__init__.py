"""Rotary position embedding applied in place on q and k; see README.md for the math."""

from gristmill.kernels.fused.rope.reference import apply_rope_reference, rope_cos_sin
from gristmill.kernels.fused.rope.triton_fwd_bwd import apply_rope

__all__ = ["apply_rope", "apply_rope_reference", "rope_cos_sin"]
