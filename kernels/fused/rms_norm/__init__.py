"""Fused RMSNorm with the optional residual add; see README.md for the math."""

from gristmill.kernels.fused.rms_norm.reference import rms_norm_reference
from gristmill.kernels.fused.rms_norm.triton_fwd_bwd import rms_norm

__all__ = ["rms_norm", "rms_norm_reference"]
